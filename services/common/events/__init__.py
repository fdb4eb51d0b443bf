"""Events delivered at least once: recorded in a write's outbox, carried by a bus, handled once each."""
