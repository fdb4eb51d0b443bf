"""BM25 retrieval over knowledge entries: ranking, stemming, no match without a shared term, thread safety."""

from __future__ import annotations

import sys
import threading

import snowballstemmer

from services.public.knowledge import KnowledgeEntry, KnowledgeIndex, tokens

ENTRIES = [
    KnowledgeEntry("Refund policy", "Refunds are issued within 14 days of purchase to the original card."),
    KnowledgeEntry("Shipping times", "Orders ship within two business days from our Berlin warehouse."),
    KnowledgeEntry("Passwords", "Reset your password from the login page; the link expires after an hour."),
]


def test_the_relevant_entry_ranks_first() -> None:
    index = KnowledgeIndex(ENTRIES)
    assert index.search("When will my order ship?")[0].entry.title == "Shipping times"
    assert index.search("I forgot my password")[0].entry.title == "Passwords"
    scores = [match.score for match in index.search("refund shipping password")]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and min(scores) > 0


def test_title_words_weigh_more_than_content_words() -> None:
    index = KnowledgeIndex(
        [
            KnowledgeEntry("Gift wrapping", "We wrap any order in recycled paper for free."),
            KnowledgeEntry("Paper invoices", "Invoices are sent by email, or on paper for a fee."),
        ]
    )
    assert index.search("paper")[0].entry.title == "Paper invoices"


def test_words_match_across_inflections() -> None:
    assert tokens("Refunds refunded REFUND refunding") == ["refund"] * 4
    assert KnowledgeIndex(ENTRIES).search("refunds")[0].entry.title == "Refund policy"
    assert KnowledgeIndex(ENTRIES).search("refund")[0].entry.title == "Refund policy"


def test_stop_words_are_dropped() -> None:
    assert tokens("How do I get a refund for the order?") == ["get", "refund", "order"]


def test_no_shared_term_means_no_match() -> None:
    index = KnowledgeIndex(ENTRIES)
    assert index.search("Can I bring my parrot to the seminar?") == []
    assert index.search("what is the and of it") == []  # stop words alone
    assert index.search("") == []


def test_an_empty_index_matches_nothing() -> None:
    index = KnowledgeIndex([])
    assert index.search("refund") == [] and index.entries == ()


def test_the_limit_is_respected() -> None:
    index = KnowledgeIndex(ENTRIES)
    assert len(index.search("refund ship password", limit=2)) == 2
    assert index.search("refund", limit=0) == []


def test_tokens_can_be_computed_from_several_threads_at_once() -> None:
    # Unseen words, so every thread runs the stemmer itself rather than reading the cache.
    words = [f"{stem}{n}{suffix}" for n in range(300) for stem in ("refund", "ship") for suffix in "sd"]
    reference = snowballstemmer.stemmer("english")
    expected = [reference.stemWord(word) for word in words]
    results: list[list[str]] = [[] for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to expose shared state
    try:
        threads = [
            threading.Thread(target=lambda n=n: results[n].extend(tokens(" ".join(words[n::4]))))
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert all(results[n] == expected[n::4] for n in range(4))
