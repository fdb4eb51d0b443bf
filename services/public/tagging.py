"""The bot pipeline's tags for a visitor message: intent, sentiment and language."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from py3langid.langid import MODEL_FILE, LanguageIdentifier
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from services.public.knowledge import tokens

# Languages the detector chooses among: restricting it keeps short messages from landing on rare ones.
LANGUAGES = [
    "en",
    "de",
    "fr",
    "es",
    "it",
    "pt",
    "nl",
    "sv",
    "da",
    "no",
    "fi",
    "pl",
    "cs",
    "ru",
    "uk",
    "tr",
    "ar",
    "he",
    "hi",
    "ja",
    "zh",
    "ko",
    "id",
    "vi",
    "th",
    "el",
    "ro",
    "hu",
]
LANGUAGE_CONFIDENCE = 0.6  # below this normalised probability the language is left unknown
SENTIMENT_THRESHOLD = 0.05  # VADER's own convention for its compound score
INTENTS = (
    "billing",
    "technical_support",
    "sales",
    "account",
    "cancellation",
    "complaint",
    "feedback",
    "greeting",
    "human_handoff",
    "general",
)
# Words (stemmed like the knowledge index) that point to each intent; the most hits wins, ties in order.
_LEXICON = {
    "cancellation": "cancel cancellation unsubscribe terminate end close quit stop subscription",
    "billing": "bill billing invoice charge charged payment pay refund price cost card receipt fee "
    "overcharged",
    "technical_support": "error bug crash crashes broken work working login log password install reset slow "
    "fail failed issue problem app website page load",
    "human_handoff": "human person agent representative someone operator staff real",
    "complaint": "complaint complain unacceptable terrible awful disappointed angry worst rude",
    "account": "account profile email username settings address update change delete",
    "sales": "buy purchase pricing plan upgrade quote demo trial discount enterprise",
    "feedback": "feedback suggestion suggest idea love great improve review",
    "greeting": "hello hi hey morning afternoon evening greetings",
}
_GREETING_ONLY = frozenset([*tokens(_LEXICON["greeting"]), "there", "thank", "thanks"])


@dataclass(frozen=True)
class Tags:
    """What the pipeline learned from one message; None where it could not tell."""

    intent: str
    sentiment: str | None
    language: str | None


def _stems(words: str) -> frozenset[str]:
    return frozenset(tokens(words))


class Tagger:
    """Tags messages: py3langid for language, VADER for (English) sentiment, a stemmed lexicon for intent."""

    def __init__(self) -> None:
        self._languages = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._languages.set_languages(LANGUAGES)
        self._sentiment = SentimentIntensityAnalyzer()
        self._lexicon = {intent: _stems(words) for intent, words in _LEXICON.items()}
        self._lock = threading.Lock()  # the language model keeps per-call state

    def tag(self, text: str) -> Tags:
        """Tags one message (a few milliseconds; safe to call from several threads)."""
        language = self.language(text)
        return Tags(intent=self.intent(text), sentiment=self.sentiment(text, language), language=language)

    def language(self, text: str) -> str | None:
        """The ISO 639-1 code, or None when the text is too short or the model is unsure."""
        if sum(ch.isalpha() for ch in text) < 3:
            return None
        with self._lock:
            code, confidence = self._languages.classify(text)
        return str(code) if confidence >= LANGUAGE_CONFIDENCE else None

    def sentiment(self, text: str, language: str | None) -> str | None:
        """positive, negative or neutral; None for languages VADER's English lexicon cannot read."""
        if language not in (None, "en"):
            return None
        compound = self._sentiment.polarity_scores(text)["compound"]
        if compound >= SENTIMENT_THRESHOLD:
            return "positive"
        if compound <= -SENTIMENT_THRESHOLD:
            return "negative"
        return "neutral"

    def intent(self, text: str) -> str:
        """The intent whose words the message uses most; general when none."""
        words = tokens(text)
        stems = Counter(words)
        hits = {intent: sum(stems[s] for s in lexicon) for intent, lexicon in self._lexicon.items()}
        best = max(hits.values(), default=0)
        if best == 0:
            return "general"
        if hits["greeting"] == best and not set(words) - _GREETING_ONLY:
            return "greeting"
        # A greeting followed by anything else is not just a greeting.
        return next((i for i in INTENTS if hits.get(i) == best and i != "greeting"), "general")
