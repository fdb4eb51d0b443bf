"""BM25 retrieval over knowledge entries: ranking, stemming, and no match without shared terms."""

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
    scores = [m.score for m in index.search("refund shipping password", limit=3)]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_words_match_across_inflections() -> None:
    assert tokens("Refunds refunded REFUND") == ["refund", "refund", "refund"]
    assert KnowledgeIndex(ENTRIES).search("refunding")[0].entry.title == "Refund policy"


def test_no_shared_term_means_no_match() -> None:
    index = KnowledgeIndex(ENTRIES)
    assert index.search("Can I bring my parrot to the seminar?") == []
    assert index.search("the and of") == []  # stop words alone
    assert KnowledgeIndex([]).search("refund") == []


def test_the_limit_is_respected() -> None:
    assert len(KnowledgeIndex(ENTRIES).search("refund ship password", limit=2)) == 2
