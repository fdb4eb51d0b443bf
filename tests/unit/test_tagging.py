"""Message tags: intent from the stemmed lexicon, sentiment from VADER, language from py3langid."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.public.tagging import INTENTS, Tagger


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger()


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("I was charged twice on my invoice", "billing"),
        ("the app crashes when I log in", "technical_support"),
        ("how do I cancel my subscription", "cancellation"),
        ("hello there", "greeting"),
        ("Good morning!", "greeting"),
        ("Hello, my invoice is wrong", "billing"),
        ("Do you offer a discount on the enterprise plan?", "sales"),
        ("I want to change the email on my account", "account"),
        ("This is unacceptable, the worst service ever", "complaint"),
        ("I have a suggestion to improve the dashboard", "feedback"),
        ("I want to talk to a human", "human_handoff"),
        ("Can I bring my parrot to the seminar?", "general"),
        ("", "general"),
    ],
)
def test_intents(tagger: Tagger, text: str, intent: str) -> None:
    tags = tagger.tag(text)
    assert tags.intent == intent
    assert tags.intent in INTENTS and len(tags.intent) <= 50


@pytest.mark.parametrize(
    ("text", "sentiment"),
    [
        ("This is great, thank you so much!", "positive"),
        ("This is terrible, I am very angry.", "negative"),
        ("Where is my order?", "neutral"),
        ("", "neutral"),
        # A long message is judged by its opening and ending, both of which are angry here.
        ("I am furious. " + "Order 123 was placed on Monday. " * 300 + "This is awful!", "negative"),
    ],
)
def test_sentiment(tagger: Tagger, text: str, sentiment: str) -> None:
    assert tagger.tag(text).sentiment == sentiment


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("How long does a refund usually take?", "en"),
        ("Wie lange dauert die Rückerstattung normalerweise?", "de"),
        ("Combien de temps faut-il pour un remboursement ?", "fr"),
        ("Hola, necesito ayuda con mi factura", "es"),
        ("Chcem zrušiť svoje predplatné", "sk"),  # not Czech, its close relative
        ("a", None),
        ("ok", None),
        ("?!", None),
        ("12345 !!!", None),
    ],
)
def test_languages(tagger: Tagger, text: str, language: str | None) -> None:
    assert tagger.tag(text).language == language


def test_tags_agree_across_threads(tagger: Tagger) -> None:
    texts = ["I was charged twice", "Die App stürzt ab", "hello there", "the app crashes"] * 50
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(tagger.tag, texts)) == [tagger.tag(text) for text in texts]


def test_the_libraries_import_without_warnings() -> None:
    code = "import services.public.tagging, services.public.agents; services.public.tagging.Tagger()"
    finished = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr


def test_other_languages_get_no_sentiment_rather_than_a_wrong_one(tagger: Tagger) -> None:
    tags = tagger.tag("Wie lange dauert die Rückerstattung normalerweise?")
    assert tags.language == "de" and tags.sentiment is None
