"""Pacing: requests to Harness spaced evenly below its rate limit.

Harness allows 400 calls a minute per key, enforced by a 429 without Retry-After: spacing
requests ``60 / MAX_REQUESTS_PER_MINUTE`` s apart, retries included, never meets it, so a
backlog drains at the full pace. One pacer per instance: back-to-back runs keep the spacing.
"""

import threading

from harness_audit.clock import Clock, Deadline
from harness_audit.errors import DeadlineReached


class Pacer:
    def __init__(self, requests_per_minute: int, clock: Clock):
        # 0: no pacing (a self-managed installation without the edge throttle, benchmarks).
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._clock = clock
        self._next_slot: float | None = None
        self._lock = threading.Lock()

    def wait(self, deadline: Deadline) -> None:
        """Wait for the next request's slot; DeadlineReached if it comes too late."""
        if not self._interval:
            return
        with self._lock:
            now = self._clock.monotonic()
            slot = now if self._next_slot is None else max(now, self._next_slot)
            delay = slot - now
            if delay and delay >= deadline.remaining():
                raise DeadlineReached(f"the next request's slot is {delay:.2f} s away")
            self._next_slot = slot + self._interval
        if delay:
            self._clock.sleep(delay)
