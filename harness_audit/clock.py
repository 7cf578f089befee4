"""Time, behind a small interface so tests never wait through a real backoff."""

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...  # wall-clock time, epoch milliseconds, as Harness stamps
    def monotonic(self) -> float: ...  # seconds that never go back, for deadlines
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class Deadline:
    """The run's time. Paging stops ``reserve_seconds`` before the end, so that the last
    part, the checkpoint and, after a failure, the lease's release still fit."""

    def __init__(self, clock: Clock, budget_seconds: float, reserve_seconds: float):
        self._clock = clock
        self._end = clock.monotonic() + budget_seconds
        self._reserve = reserve_seconds  # within the budget: MAX_RUN_SECONDS is 10 s or more

    @classmethod
    def for_run(cls, clock: Clock, max_run_seconds: int) -> "Deadline":
        """A run's. The reserve: half for the last upload and checkpoint, half for releasing
        the lease after a failure, with room for the library's retries within each half."""
        return cls(clock, max_run_seconds, min(30.0, max(5.0, max_run_seconds * 0.1)))

    def remaining(self) -> float:
        """Seconds left for paging."""
        return self._end - self._reserve - self._clock.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def storage_seconds(self, *, release: bool = False) -> float:
        """Seconds one Cloud Storage call may take: up to the end, less the release's half
        of the reserve unless it is the release."""
        kept = 0.0 if release else self._reserve / 2
        return self._end - kept - self._clock.monotonic()


def utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def iso(epoch_ms: int) -> str:
    """``2026-11-30T07:35:48.123Z``: how times appear in logs and object metadata."""
    return utc(epoch_ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")
