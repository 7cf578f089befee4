"""The window a run reads, ``[previous end - OVERLAP, now]`` chosen once, and what it passes
on: the ids delivered within the overlap, so that re-reading it writes nothing twice. Pure."""

from collections.abc import Iterable
from itertools import chain

from harness_audit.state import State, WindowProgress, new_window


def plan_window(
    state: State, now_ms: int, *, overlap_ms: int, first_lookback_ms: int
) -> WindowProgress:
    """The window this run pages: the unfinished one if any, else a new one ending now."""
    if state.window is not None:
        return state.window
    if state.watermark_ms is None:
        return new_window(now_ms - first_lookback_ms, now_ms)
    # A clock that went back must not make a window end before the last one did.
    return new_window(state.watermark_ms - overlap_ms, max(now_ms, state.watermark_ms))


def tail_ids(ids: Iterable[tuple[str, int]], since_ms: int) -> dict[str, int]:
    """The ids stamped at or after ``since_ms``: what the next window's overlap re-reads."""
    return {audit_id: ts for audit_id, ts in ids if ts >= since_ms}


def complete_window(state: State, window: WindowProgress, *, overlap_ms: int) -> State:
    """The state after ``window`` has been read to its end. The next window starts at
    ``end - overlap``: every id stamped since then is kept, written, skipped or found."""
    since_ms = window.end_ms - overlap_ms
    ids = chain(state.delivered.items(), window.ahead.items(), window.committed.items())
    return State(watermark_ms=window.end_ms, delivered=tail_ids(ids, since_ms), lease=state.lease)
