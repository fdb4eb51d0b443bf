"""The bot pipeline's tags: intent from the lexicon, sentiment from VADER, language from py3langid."""

import pytest

from services.public.tagging import INTENTS, Tagger


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger()


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("I was charged twice on my invoice", "billing"),
        ("The app crashes when I log in", "technical_support"),
        ("How do I cancel my subscription?", "cancellation"),
        ("hello there", "greeting"),
        ("Hello, my invoice is wrong", "billing"),
        ("I want to talk to a human", "human_handoff"),
        ("Can I bring my parrot to the seminar?", "general"),
    ],
)
def test_intents(tagger: Tagger, text: str, intent: str) -> None:
    assert tagger.tag(text).intent == intent
    assert intent in INTENTS


def test_sentiment(tagger: Tagger) -> None:
    assert tagger.tag("This is great, thank you so much!").sentiment == "positive"
    assert tagger.tag("This is terrible, I am very angry.").sentiment == "negative"
    assert tagger.tag("Where is my order?").sentiment == "neutral"
    # VADER reads English only: another language gets no sentiment rather than a wrong one.
    assert tagger.tag("Wie lange dauert die Rückerstattung?").sentiment is None


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("How long does a refund usually take?", "en"),
        ("Wie lange dauert die Rückerstattung normalerweise?", "de"),
        ("Combien de temps faut-il pour un remboursement ?", "fr"),
        ("¿Cuánto tarda normalmente un reembolso?", "es"),
        ("ok", None),
        ("?!", None),
    ],
)
def test_languages(tagger: Tagger, text: str, language: str | None) -> None:
    assert tagger.tag(text).language == language
