"""Ranked retrieval over an instance's knowledge entries: Okapi BM25 on stemmed words, no external service."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

K1 = 1.5
B = 0.75
TITLE_WEIGHT = 2  # a term in the title counts as if it appeared this many times in the text
_WORD = re.compile(r"\w+", re.UNICODE)
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "please",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)
_stemmer = snowballstemmer.stemmer("english")


@dataclass(frozen=True)
class KnowledgeEntry:
    """One piece of knowledge: a title (a question or topic) and its content."""

    title: str
    content: str


@dataclass(frozen=True)
class Match:
    """An entry and how well it matches a query (BM25 score, higher is better)."""

    entry: KnowledgeEntry
    score: float


@lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    return str(_stemmer.stemWord(word))


def tokens(text: str) -> list[str]:
    """Lower-cased, stemmed words of `text`, without stop words."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and not w.isdigit()]


class KnowledgeIndex:
    """A BM25 index of knowledge entries (title terms weighted up)."""

    def __init__(self, entries: Sequence[KnowledgeEntry]) -> None:
        self.entries = list(entries)
        self._terms: list[Counter[str]] = []
        for entry in self.entries:
            terms = Counter(tokens(entry.content))
            for term in tokens(entry.title):
                terms[term] += TITLE_WEIGHT
            self._terms.append(terms)
        self._lengths = [sum(t.values()) for t in self._terms]
        self._average = (sum(self._lengths) / len(self._lengths)) if self._lengths else 0.0
        frequency: Counter[str] = Counter()
        for terms in self._terms:
            frequency.update(terms.keys())
        count = len(self.entries)
        self._idf = {t: math.log(1 + (count - n + 0.5) / (n + 0.5)) for t, n in frequency.items()}

    def search(self, query: str, *, limit: int = 3) -> list[Match]:
        """The best-matching entries, best first; only entries sharing a term with the query."""
        wanted = [t for t in set(tokens(query)) if t in self._idf]
        if not wanted:
            return []
        scored = []
        for index, terms in enumerate(self._terms):
            score = 0.0
            norm = K1 * (1 - B + B * self._lengths[index] / self._average) if self._average else K1
            for term in wanted:
                tf = terms.get(term, 0)
                if tf:
                    score += self._idf[term] * tf * (K1 + 1) / (tf + norm)
            if score > 0:
                scored.append(Match(self.entries[index], score))
        scored.sort(key=lambda m: m.score, reverse=True)
        return scored[:limit]
