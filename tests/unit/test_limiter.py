"""The in-process sliding window: exact over a moving minute."""

from edge.gatekeeper.limiter import MemoryLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sixty_first_hit_within_a_minute_is_refused() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock=clock)
    verdicts = []
    for _ in range(61):
        verdicts.append(limiter.hit_now("k", 60))
        clock.now += 0.5
    assert all(v.allowed for v in verdicts[:60])
    assert [v.remaining for v in verdicts[:3]] == [59, 58, 57]
    refused = verdicts[60]
    assert (refused.allowed, refused.remaining) == (False, 0)
    # The first hit was 30.5 s ago: it leaves the window in 29.5 s.
    assert refused.retry_after == 30


def test_window_slides_rather_than_resets() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock=clock)
    for _ in range(60):
        limiter.hit_now("k", 60)
    clock.now += 59.9
    assert not limiter.hit_now("k", 60).allowed  # a fixed window could have reset here
    clock.now += 0.2
    assert limiter.hit_now("k", 60).allowed


def test_keys_are_independent_and_refusals_are_not_counted() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock=clock)
    assert limiter.hit_now("a", 1).allowed
    for _ in range(5):
        assert not limiter.hit_now("a", 1).allowed
    assert limiter.hit_now("b", 1).allowed
    clock.now += 60.01
    assert limiter.hit_now("a", 1).allowed
