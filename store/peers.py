"""Whether a replica's commits need a NOTIFY: only when another replica listens.

A NOTIFY is how the other control planes on the same PostgreSQL hear of a commit (their
parked claims, their followers: store.hub). A replica alone sends them for nobody but its
own LISTEN, which gets each back to drop it (store.hub.listen_postgres): on the hot path
that was about a fifth of the control plane's CPU and of PostgreSQL's per task, and
0.3 ms of each dispatch (`bench.peers`, issue #15).

So each listening replica says hello (a NOTIFY of its origin alone) every `HELLO_EVERY`
seconds on its LISTEN connection, and counts anything it hears from another origin, hello
or commit, as a replica that listens. It notifies on commit while one was heard in the last
`PEER_TTL` seconds, and always:

- while it does not listen itself (not yet, or its LISTEN connection is down): it cannot
  know, and a process that never listens (a tool writing to the database) always notifies;
- for `WARM_UP` seconds after its LISTEN starts, longer than a hello's period: the replicas
  already there are heard from within that time, before they could be missed.

A replica that starts is heard at its first hello, which it sends as it starts listening,
before it serves anything; one that stops is notified for `PEER_TTL` more seconds (the safe
side). What a new replica could miss is what the others commit in the moment between its
hello and their hearing it: at the end of its warm-up it wakes all of its followers to read
again (store.hub.wake_all), so a wake-up missed then is late by `WARM_UP` at most, never
lost. So does a replica whose own hellos were late by more than `PEER_TTL` (its loop
stalled): it may have been taken for gone meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["HELLO_EVERY", "PEER_TTL", "WARM_UP", "Peers"]

HELLO_EVERY = 1.0
PEER_TTL = 10.0
WARM_UP = 2 * HELLO_EVERY


class Peers:
    """This replica's view of the others: `needed()` is asked at every commit (cheap)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._listening = False
        self._until = 0.0  # notify until then (a peer heard, or the warm-up)
        self._warm_until: float | None = None  # the warm-up's end, until `warmed()` says so
        self.last_hello = 0.0  # when this replica last said hello
        self._heard_until = 0.0  # another replica counts as there until then

    def needed(self) -> bool:
        """Whether a commit now must NOTIFY."""
        return not self._listening or self.clock() < self._until

    def listening(self) -> None:
        """This replica's LISTEN has just started (again)."""
        self._listening = True
        self._warm_until = self.clock() + WARM_UP
        self._until = max(self._until, self._warm_until)

    def warmed(self) -> bool:
        """True once, when asked after the warm-up ended (see the module's docstring)."""
        if self._warm_until is None or self.clock() < self._warm_until:
            return False
        self._warm_until = None
        return True

    def deaf(self) -> None:
        """Its LISTEN connection is down."""
        self._listening = False

    def heard(self) -> bool:
        """Something came from another replica (a hello or a commit); True when none had
        been heard for `PEER_TTL` before (the hub logs it: every commit notifies from now)."""
        now = self.clock()
        first = now >= self._heard_until
        self._heard_until = now + PEER_TTL
        self._until = max(self._until, self._heard_until)
        return first

    def said_hello(self) -> bool:
        """Record a hello sent now; True when the one before was more than `PEER_TTL` ago
        (the others may have stopped notifying this replica meanwhile)."""
        now = self.clock()
        late = self.last_hello > 0 and now - self.last_hello > PEER_TTL
        self.last_hello = now
        return late
