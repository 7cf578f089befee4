"""The checkpoint's content and its encoding. Pure: no I/O here.

One JSON object holds everything a run needs to continue exactly where the last one
stopped:

- ``watermark_ms``: the end of the last completed window. The next window starts
  OVERLAP_SECONDS before it, to catch records that became visible late.
- ``delivered``: ``{auditId: timestamp}`` of events stamped at or after
  ``watermark - overlap``, already delivered, so the overlap is not written twice.
- ``window``: a window still being paged (deadline, failure, crash): its fixed bounds,
  how far paging by time has read it (``paging.Position``), the next part number, and the
  ids of what it has written within the overlap.
- ``lease``: which run owns the checkpoint, and until when.

Version 1 checkpoints (a page token instead of a position) and the guide's format
(``{"since": ms, "pageToken": ...}``) are read too.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness_audit.errors import StateCorrupt
from harness_audit.paging import ORDERS, Position

STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)
ORIGIN_COLLECTOR = "collector"
ORIGIN_GUIDE = "guide"
# Epoch milliseconds any date can hold: 1970 up to the end of year 9999.
MAX_EPOCH_MS = 253_402_300_799_999
CLOCK_SKEW_MS = 60_000


@dataclass(frozen=True)
class Lease:
    owner: str
    expires_ms: int

    def is_live(self, now_ms: int) -> bool:
        return now_ms < self.expires_ms


@dataclass(frozen=True)
class WindowProgress:
    """A window being paged. Its bounds never change once chosen."""

    start_ms: int
    end_ms: int
    position: Position
    next_part: int = 1
    pages: int = 0
    events_written: int = 0
    # Ids (with timestamps) written by this window and stamped within the last overlap.
    committed: dict[str, int] = field(default_factory=dict)
    # Ids found in parts that an earlier attempt wrote beyond our checkpoint (crash recovery).
    ahead: dict[str, int] = field(default_factory=dict)
    # A version 1 window is read again from its top: the ids of the parts it already wrote
    # must be read back first, so that nothing is written twice.
    reread_parts: bool = False


def new_window(start_ms: int, end_ms: int) -> WindowProgress:
    return WindowProgress(start_ms, end_ms, Position(start_ms, end_ms))


@dataclass(frozen=True)
class State:
    watermark_ms: int | None = None
    delivered: Mapping[str, int] = field(default_factory=dict)
    window: WindowProgress | None = None
    lease: Lease | None = None
    origin: str = ORIGIN_COLLECTOR


def encode_state(state: State, *, updated_ms: int, version: str) -> bytes:
    document = {
        "version": STATE_VERSION,
        "watermark_ms": state.watermark_ms,
        "delivered": state.delivered,
        "window": _encode_window(state.window) if state.window else None,
        "lease": (
            {"owner": state.lease.owner, "expires_ms": state.lease.expires_ms}
            if state.lease
            else None
        ),
        "updated_ms": updated_ms,
        "collector_version": version,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _encode_window(window: WindowProgress) -> dict:
    position = window.position
    return {
        "start_ms": window.start_ms,
        "end_ms": window.end_ms,
        "lower_ms": position.lower_ms,
        "upper_ms": position.upper_ms,
        "order": position.order,
        "edge_ids": sorted(position.edge_ids),
        "burst_ms": position.burst_ms,
        "burst_pass": position.burst_pass,
        "burst_new": position.burst_new,
        "pending": [list(bounds) for bounds in position.pending],
        "next_part": window.next_part,
        "pages": window.pages,
        "events_written": window.events_written,
        "committed": window.committed,
        "ahead": window.ahead,
        "reread_parts": window.reread_parts,
    }


def decode_state(data: bytes) -> State:
    """Parse a checkpoint (ours or the guide's); raise StateCorrupt saying what is wrong."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise StateCorrupt(f"it is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise StateCorrupt("it is not a JSON object")
    if "version" not in document and "since" in document:
        return _decode_guide(document)
    version = document.get("version")
    if not _is_int(version) or version not in READABLE_VERSIONS:
        raise StateCorrupt(
            f"its version is {_short(version)}, this collector reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (or the guide's {{'since': ...}} format)"
        )
    try:
        raw_window = document.get("window")
        window = None
        if raw_window:
            window = _decode_window(raw_window) if version == 2 else _decode_window_v1(raw_window)
        return State(
            watermark_ms=_optional_ms(document, "watermark_ms"),
            delivered=_id_map(document.get("delivered", {}), "delivered"),
            window=window,
            lease=_decode_lease(document["lease"]) if document.get("lease") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateCorrupt(f"a field is missing or has the wrong type ({_short(exc)})") from None


def check_times(state: State, now_ms: int, *, max_lookback_ms: int) -> None:
    """Refuse a checkpoint whose times cannot come from a run of this collector: resuming
    from a watermark in the future would silently skip every event until then."""
    latest = now_ms + CLOCK_SKEW_MS
    if state.watermark_ms is not None and state.watermark_ms > latest:
        raise StateCorrupt(
            f"its watermark_ms {state.watermark_ms} lies after now ({now_ms}): resuming from "
            "it would skip every event until then"
        )
    if state.window is not None and state.window.end_ms > latest:
        raise StateCorrupt(
            f"its window ends at {state.window.end_ms}, after now ({now_ms}): completing it "
            "would move the watermark into the future"
        )
    if state.origin == ORIGIN_GUIDE and state.watermark_ms < now_ms - max_lookback_ms:
        raise StateCorrupt(
            f"the guide's 'since' {state.watermark_ms} is older than the longest lookback "
            f"this collector reads ({max_lookback_ms // 86_400_000} days)"
        )


def _decode_guide(document: dict) -> State:
    """The guide's ``{"since": ms, "pageToken": ...}``. Its pageToken belongs to a request
    body that cannot be rebuilt (its endTime moved on every page): the window restarts at
    ``since`` minus the overlap instead, and migration.adopt_guide_state learns what the
    guide's objects already hold there."""
    since = document.get("since")
    if not _is_int(since) or not 0 < since <= MAX_EPOCH_MS:
        raise StateCorrupt(
            f"it looks like the guide's format but 'since' is {_short(since)}, not epoch "
            "milliseconds"
        )
    return State(watermark_ms=since, origin=ORIGIN_GUIDE)


def _decode_window(raw: dict) -> WindowProgress:
    order = raw.get("order")
    if order is not None and order not in ORDERS:
        raise ValueError(f"window.order {_short(order)}")
    edge_ids = raw.get("edge_ids", [])
    if not isinstance(edge_ids, list) or not all(isinstance(i, str) for i in edge_ids):
        raise TypeError("window.edge_ids must be a list of auditId strings")
    pending = raw.get("pending", [])
    if not isinstance(pending, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(_is_ms(v) for v in pair)
        for pair in pending
    ):
        raise TypeError("window.pending must be a list of [start_ms, end_ms] pairs")
    burst_new = raw.get("burst_new", False)
    if not isinstance(burst_new, bool):
        raise TypeError("window.burst_new must be true or false")
    position = Position(
        lower_ms=_ms(raw, "lower_ms"),
        upper_ms=_ms(raw, "upper_ms", allow_below=True),
        order=order,
        edge_ids=frozenset(edge_ids),
        burst_ms=_optional_ms(raw, "burst_ms"),
        burst_pass=_count(raw, "burst_pass"),
        burst_new=burst_new,
        pending=tuple((low, high) for low, high in pending),
    )
    reread = raw.get("reread_parts", False)
    if not isinstance(reread, bool):
        raise TypeError("window.reread_parts must be true or false")
    window = _window(raw, position, reread_parts=reread)
    if not window.start_ms <= position.lower_ms or position.upper_ms > window.end_ms:
        raise ValueError("window position lies outside the window")
    return window


def _decode_window_v1(raw: dict) -> WindowProgress:
    """A window saved with a page token: read again from its top under paging by time.
    Its parts are read back first, so what it wrote is skipped; what its token-driven
    paging may have skipped is found."""
    start_ms, end_ms = _ms(raw, "start_ms"), _ms(raw, "end_ms")
    window = _window(raw, Position(start_ms, end_ms), reread_parts=_count(raw, "next_part") > 1)
    return window


def _window(raw: dict, position: Position, *, reread_parts: bool) -> WindowProgress:
    window = WindowProgress(
        start_ms=_ms(raw, "start_ms"),
        end_ms=_ms(raw, "end_ms"),
        position=position,
        next_part=_count(raw, "next_part"),
        pages=_count(raw, "pages", low=0),
        events_written=_count(raw, "events_written", low=0),
        committed=_id_map(raw.get("committed", {}), "window.committed"),
        ahead=_id_map(raw.get("ahead", {}), "window.ahead"),
        reread_parts=reread_parts,
    )
    if window.end_ms < window.start_ms:
        raise ValueError("window ends before it starts")
    return window


def _decode_lease(raw: dict) -> Lease:
    owner = raw["owner"]
    if not isinstance(owner, str):
        raise TypeError("lease.owner must be a string")
    return Lease(owner=owner, expires_ms=_ms(raw, "expires_ms"))


def _id_map(raw, name: str) -> dict[str, int]:
    if not isinstance(raw, dict) or not all(
        isinstance(key, str) and _is_ms(value) for key, value in raw.items()
    ):
        raise TypeError(f"{name} must map auditId strings to epoch milliseconds")
    return raw


def _ms(raw: dict, name: str, *, allow_below: bool = False) -> int:
    value = raw[name]
    # An exhausted range ends one millisecond below its start: the only value below 0.
    if allow_below and _is_int(value) and value == -1:
        return value
    if not _is_ms(value):
        raise ValueError(f"{name} must be epoch milliseconds (1970 to 9999), not {_short(value)}")
    return value


def _optional_ms(raw: dict, name: str) -> int | None:
    return None if raw.get(name) is None else _ms(raw, name)


def _count(raw: dict, name: str, *, low: int = 1) -> int:
    value = raw[name]
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be a whole number from {low}, not {_short(value)}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ms(value) -> bool:
    return _is_int(value) and 0 <= value <= MAX_EPOCH_MS


def _short(value) -> str:
    """A value for an error message, cut short: the checkpoint is untrusted input."""
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
