"""Events delivered at least once: recorded in a write's outbox, carried by a bus, handled once each.

outbox.py records them and dispatches them to bus.py; inbox.py makes each consumer's handling idempotent;
faults.py names how handling fails and whose fault it is; dead_letters.py retries failed events, then keeps
them for an operator. services/common/delivery.py wires them (and email) from the HYDRA_* settings.
"""
