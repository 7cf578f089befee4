"""A clock that only moves when told to, or when something sleeps on it."""

import threading


class FakeClock:
    def __init__(self, start_ms: int = 1_749_564_000_000):
        self._now_ms = start_ms
        self._monotonic = 1_000.0
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now_ms(self) -> int:
        with self._lock:
            return self._now_ms

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now_ms += round(seconds * 1000)
            self._monotonic += seconds
