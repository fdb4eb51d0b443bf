"""Ranked retrieval over an instance's knowledge entries: a small Okapi BM25 on stemmed English words."""

from __future__ import annotations

import heapq
import math
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import snowballstemmer

K1 = 1.5  # term-frequency saturation: the higher, the longer repeating a term keeps adding to the score
B = 0.75  # how much a long entry is penalised for containing many terms
TITLE_WEIGHT = 2  # a title word counts as this many occurrences: the title says what the entry is about
STEM_CACHE_SIZE = 65_536
WORD = re.compile(r"\w+")
# Every ASCII character that \w does not match, as a space: for ASCII text, splitting what is left on
# whitespace gives exactly WORD's matches, in half the time.
_ASCII_NON_WORD = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")})
# Words too common to tell entries apart, and the pieces that contractions leave ("don't" -> "don", "t").
STOP_WORDS = frozenset(
    [
        *("a", "about", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "being"),
        *("but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he"),
        *("her", "here", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me"),
        *("my", "no", "not", "of", "on", "or", "our", "ours", "please", "she", "so", "some", "than", "that"),
        *("the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "too", "us"),
        *("very", "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why", "will"),
        *("with", "would", "you", "your", "yours"),
        *("d", "don", "doesn", "didn", "isn", "aren", "wasn", "weren", "won", "wouldn", "couldn"),
        *("shouldn", "ll", "m", "re", "s", "t", "ve"),
    ]
)


@dataclass(frozen=True)
class KnowledgeEntry:
    """One piece of an instance's knowledge: a title (a question or topic) and its content."""

    title: str
    content: str


@dataclass(frozen=True)
class Match:
    """An entry and its BM25 score for a query (higher is better, always above zero)."""

    entry: KnowledgeEntry
    score: float


_per_thread = threading.local()


def _stemmer() -> Any:
    """This thread's stemmer: a snowball stemmer holds the word it works on, so threads cannot share one."""
    stemmer = getattr(_per_thread, "stemmer", None)
    if stemmer is None:
        stemmer = _per_thread.stemmer = snowballstemmer.stemmer("english")
    return stemmer


@lru_cache(maxsize=STEM_CACHE_SIZE)
def _term(word: str) -> str:
    """The stemmed term of a lower-case word; "" for a stop word."""
    # Cached: the pure-Python stemmer costs ~20 µs a word, and a knowledge base reuses few words.
    return "" if word in STOP_WORDS else str(_stemmer().stemWord(word))


def _words(text: str) -> list[str]:
    """The lower-cased runs of unicode word characters in `text`."""
    lowered = text.lower()
    if lowered.isascii():
        return lowered.translate(_ASCII_NON_WORD).split()
    return WORD.findall(lowered)


def _terms_with_blanks(text: str) -> Iterator[str]:
    """The terms of `text` in order, "" in place of each stop word."""
    # map() keeps the loop over words out of Python: this line is most of an index build.
    return map(_term, _words(text))


def tokens(text: str) -> list[str]:
    """The words of `text` in order: lower-cased, stop words dropped, stemmed (English snowball)."""
    return list(filter(None, _terms_with_blanks(text)))


def _idf(entries: int, containing: int) -> float:
    """Inverse document frequency, in the variant that stays positive for terms found in most entries."""
    return math.log(1 + (entries - containing + 0.5) / (containing + 0.5))


class KnowledgeIndex:
    """An immutable BM25 index of knowledge entries over their titles and contents."""

    def __init__(self, entries: Sequence[KnowledgeEntry]) -> None:
        self.entries: tuple[KnowledgeEntry, ...] = tuple(entries)
        self._terms: list[Counter[str]] = []
        containing: Counter[str] = Counter()
        for entry in self.entries:
            terms = Counter(_terms_with_blanks(entry.content))
            terms.update(tokens(entry.title) * TITLE_WEIGHT)
            del terms[""]
            self._terms.append(terms)
            containing.update(terms.keys())
        lengths = [terms.total() for terms in self._terms]
        average_length = (sum(lengths) / len(lengths) if lengths else 0.0) or 1.0
        self._length_norms = [K1 * (1 - B + B * length / average_length) for length in lengths]
        self._containing = containing  # entries per term; idf is computed for query terms only
        self._rare_term_idf = _idf(len(self.entries), 1)

    @property
    def rare_term_idf(self) -> float:
        """The idf of a term found in one entry only: the highest idf here, a scale for its scores."""
        return self._rare_term_idf

    def search(self, query: str, *, limit: int = 3) -> list[Match]:
        """The `limit` best entries for `query`, best first; only entries sharing a term with it."""
        # Sorted, so scores add up in the same order in every process and equal scores rank the same.
        wanted = [
            (term, _idf(len(self.entries), self._containing[term]))
            for term in sorted(set(tokens(query)))
            if term in self._containing
        ]
        if not wanted or limit <= 0:
            return []
        scored: list[tuple[float, int]] = []
        for position, terms in enumerate(self._terms):
            score = 0.0
            for term, idf in wanted:
                count = terms.get(term)
                if count:
                    score += idf * count * (K1 + 1) / (count + self._length_norms[position])
            if score > 0:
                scored.append((score, position))
        best = heapq.nsmallest(limit, scored, key=lambda match: (-match[0], match[1]))
        return [Match(self.entries[position], score) for score, position in best]
