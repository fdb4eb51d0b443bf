"""Tags a visitor message with its intent, sentiment and language for the conversation in crm."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import islice

from py3langid.langid import MODEL_FILE, LanguageIdentifier
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from services.public.knowledge import tokens

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
# Words (stemmed like the knowledge index) pointing to each intent. The intent with the most hits wins,
# ties going to the one listed first in INTENTS; a greeting counts only when nothing else hits.
INTENT_WORDS = {
    "billing": "bill billing invoice charge charged payment pay paid refund receipt fee overcharged card "
    "transaction",
    "technical_support": "error bug crash broken work login log password install reset slow fail issue "
    "problem app website page load freeze connect sync download",
    "sales": "buy purchase price pricing cost plan upgrade quote demo trial discount enterprise license "
    "offer",
    "account": "account profile username email settings signup register verify",
    "cancellation": "cancel cancellation unsubscribe terminate subscription",
    "complaint": "complaint complain unacceptable terrible awful horrible disappointed angry worst rude "
    "ridiculous unhappy frustrated",
    "feedback": "feedback suggestion suggest idea love improve improvement review feature wish",
    "greeting": "hello hi hey morning afternoon evening greetings",
    "human_handoff": "human person agent representative operator manager someone somebody",
}
SENTIMENT_THRESHOLD = 0.05  # VADER's own convention for its compound score
# VADER's cost grows faster than the text (1,000 characters take ~1 ms, 8,000 ~40 ms): a longer message
# is judged by its first and last 500 characters.
SENTIMENT_CHARACTERS = 1_000
MIN_LETTERS = 3  # fewer letters than this ("ok", "?!") say nothing about a language
# Normalised probability the detected language needs: more likely than all the others together.
LANGUAGE_CONFIDENCE = 0.5
# Languages the detector chooses among (zxx: "no linguistic content", reported as None). Close relatives
# of the major ones stay in (gl, ca, sk, hr, ms...): without them a Slovak message is Czech with
# certainty. Rare regional ones are out: on short messages they win over English or Spanish by chance.
LANGUAGES = (
    *("af", "ar", "az", "be", "bg", "bn", "bs", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et"),
    *("eu", "fa", "fi", "fr", "ga", "gl", "gu", "he", "hi", "hr", "hu", "hy", "id", "is", "it", "ja"),
    *("ka", "kk", "kn", "ko", "lt", "lv", "mk", "ml", "mr", "ms", "mt", "nl", "no", "pa", "pl", "pt"),
    *("ro", "ru", "sk", "sl", "sq", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "uz"),
    *("vi", "zh", "zxx"),
)


@dataclass(frozen=True)
class Tags:
    """What one message says about the conversation; None where it cannot be told."""

    intent: str
    sentiment: str | None
    language: str | None


class Tagger:
    """Tags messages: a stemmed lexicon for intent, VADER for sentiment, py3langid for language.

    Thread-safe: after __init__ nothing here changes, and the stemmer is per thread.
    """

    def __init__(self) -> None:
        # Loading the language model takes ~0.5 s and ~95 MB: once per process, never per message.
        self._languages = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._languages.set_languages(LANGUAGES)
        self._sentiment = SentimentIntensityAnalyzer()
        self._intent_of_stem: dict[str, list[str]] = {}
        for intent, words in INTENT_WORDS.items():
            for stem in set(tokens(words)):
                self._intent_of_stem.setdefault(stem, []).append(intent)

    def tag(self, text: str) -> Tags:
        """The intent, sentiment and language of one message."""
        language = self.language(text)
        # VADER's lexicon is English: on other languages it misreads words (German "die" as negative).
        sentiment = self.sentiment(text) if language in (None, "en") else None
        return Tags(intent=self.intent(text), sentiment=sentiment, language=language)

    def intent(self, text: str) -> str:
        """One of INTENTS: the one whose words the message uses most; general when none."""
        hits: Counter[str] = Counter()
        for stem in tokens(text):
            hits.update(self._intent_of_stem.get(stem, ()))
        if not hits:
            return "general"
        if len(hits) > 1:
            del hits["greeting"]  # "Hi, my invoice is wrong" is about the invoice
        most = max(hits.values())
        return next(intent for intent in INTENTS if hits[intent] == most)

    def sentiment(self, text: str) -> str:
        """positive, negative or neutral, from VADER's compound score (English lexicon)."""
        if len(text) > SENTIMENT_CHARACTERS:
            half = SENTIMENT_CHARACTERS // 2
            text = f"{text[:half]}\n{text[-half:]}"
        compound = self._sentiment.polarity_scores(text)["compound"]
        if compound >= SENTIMENT_THRESHOLD:
            return "positive"
        if compound <= -SENTIMENT_THRESHOLD:
            return "negative"
        return "neutral"

    def language(self, text: str) -> str | None:
        """The ISO 639-1 code, or None when the text is too short or the detector is unsure."""
        if len(list(islice(filter(str.isalpha, text), MIN_LETTERS))) < MIN_LETTERS:
            return None
        code, probability = self._languages.classify(text)
        if code == "zxx" or probability < LANGUAGE_CONFIDENCE:
            return None
        return str(code)
