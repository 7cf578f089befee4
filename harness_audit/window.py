"""Which time window a run reads, and which of its events are new. Pure: no I/O here.

A window is ``[previous end - OVERLAP, now]``, chosen once and kept, with the same request
body, for every page and every run that resumes it. The overlap re-reads the tail of the
previous window so that records which became visible late are still fetched; the ids
delivered in that tail are carried in the checkpoint so that re-reading writes nothing
twice.
"""

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping

from harness_audit.state import State, WindowProgress

# Within one window listV2's keyset tokens never repeat an event; the offset-paged list
# endpoint does when records appear mid-paging (everything shifts down). Repeats land
# within a few pages, so a bounded memory of recent ids catches them in flat memory.
RECENT_IDS = 5_000


def plan_window(
    state: State, now_ms: int, *, overlap_ms: int, first_lookback_ms: int
) -> WindowProgress:
    """The window this run pages: the unfinished one if any, else a new one ending now."""
    if state.window is not None:
        return state.window
    if state.watermark_ms is None:
        return WindowProgress(start_ms=now_ms - first_lookback_ms, end_ms=now_ms)
    # A clock that went back must not make a window end before the last one did.
    end_ms = max(now_ms, state.watermark_ms)
    return WindowProgress(start_ms=state.watermark_ms - overlap_ms, end_ms=end_ms)


def event_identity(event: dict, fallback_ms: int) -> tuple[str, int]:
    """(auditId, timestamp) of an event, whatever its layout.

    An event without an auditId (never seen, but the spec does not promise one) gets a
    content hash, so it is still written exactly once.
    """
    audit_id = event.get("auditId") or event.get("auditEventId")
    if not isinstance(audit_id, str) or not audit_id:
        digest = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()
        audit_id = "sha256:" + digest[:32]
    timestamp = event.get("timestamp", event.get("auditEventTime"))
    if isinstance(timestamp, str) and timestamp.isdigit():
        timestamp = int(timestamp)
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        timestamp = fallback_ms
    return audit_id, timestamp


class Deduplicator:
    """Says whether an event was already delivered: in the overlap, in parts another attempt
    wrote, or earlier in this run."""

    def __init__(self, *known: Mapping[str, int]):
        # Kept by reference, empty ones too: the run grows the window's maps in place (ids
        # found in parts an earlier attempt wrote), and those must count from then on.
        self._known = list(known)
        self._recent: set[str] = set()
        self._recent_order: deque[str] = deque()

    def is_new(self, audit_id: str) -> bool:
        if audit_id in self._recent:
            return False
        for known in self._known:
            if audit_id in known:
                return False
        self._recent.add(audit_id)
        self._recent_order.append(audit_id)
        if len(self._recent_order) > RECENT_IDS:
            self._recent.discard(self._recent_order.popleft())
        return True


def tail_ids(ids: Iterable[tuple[str, int]], since_ms: int) -> dict[str, int]:
    """The ids stamped at or after ``since_ms``: what the next window's overlap re-reads."""
    return {audit_id: ts for audit_id, ts in ids if ts >= since_ms}


def complete_window(state: State, window: WindowProgress, *, overlap_ms: int) -> State:
    """The state after ``window`` has been read to its end.

    The next window starts at ``end - overlap``, so every id stamped since then is kept,
    whether this window wrote it, skipped it as already delivered, or found it in a part
    an earlier attempt wrote: a window shorter than the overlap passes older ids on too.
    """
    since_ms = window.end_ms - overlap_ms
    delivered = tail_ids(state.delivered.items(), since_ms)
    delivered.update(tail_ids(window.ahead.items(), since_ms))
    delivered.update(tail_ids(window.committed.items(), since_ms))
    return State(watermark_ms=window.end_ms, delivered=delivered, window=None, lease=state.lease)
