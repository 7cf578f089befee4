"""Requests to Harness spaced evenly below its limit (400 a minute per key, then a 429 with no
Retry-After), retries included, so a backlog drains at full pace and never meets the limit.
One pacer per instance: back-to-back runs keep the spacing."""

import threading

from harness_audit.clock import Clock, Deadline
from harness_audit.errors import DeadlineReached


class Pacer:
    def __init__(self, requests_per_minute: int, clock: Clock):
        # 0: no pacing (a self-managed installation without the edge throttle, benchmarks).
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._clock, self._next_slot, self._lock = clock, float("-inf"), threading.Lock()

    def wait(self, deadline: Deadline) -> None:
        """Wait for the next request's slot; DeadlineReached if it comes too late."""
        with self._lock:
            now = self._clock.monotonic()
            slot = max(now, self._next_slot)
            delay = slot - now
            if delay and delay >= deadline.remaining():
                raise DeadlineReached(f"the next request's slot is {delay:.2f} s away")
            self._next_slot = slot + self._interval
        if delay:
            self._clock.sleep(delay)
