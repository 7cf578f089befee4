"""The checkpoint's content and its encoding, ours and the guide's. Pure: no I/O here.
Every field is untrusted on the way in: each is checked, and a failure names the field."""

import json
import reprlib  # error messages show values cut short: the checkpoint is untrusted
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from harness_audit.errors import StateCorrupt
from harness_audit.paging import ORDERS, Position

STATE_VERSION = 2
ORIGIN_GUIDE = "guide"
# Epoch milliseconds any date can hold: 1970 up to the end of year 9999.
MAX_EPOCH_MS = 253_402_300_799_999
CLOCK_SKEW_MS = 60_000
# A window's whole numbers: (lowest, highest), None for no highest. An exhausted range ends
# one millisecond below its start: -1 is the only upper_ms below 0.
_MS, _COUNT, _PART = (0, MAX_EPOCH_MS), (0, None), (1, None)
_WINDOW_INTS = dict(start_ms=_MS, end_ms=_MS, next_part=_PART, pages=_COUNT, events_written=_COUNT)
_POSITION_INTS = {"lower_ms": _MS, "upper_ms": (-1, MAX_EPOCH_MS), "burst_pass": _PART}
_POSITION_FIELDS = (*_POSITION_INTS, "order", "burst_ms", "burst_new", "pending")


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
    # {auditId: timestamp} written by this window within its last overlap; found in parts
    # an earlier attempt wrote beyond the checkpoint.
    committed: dict[str, int] = field(default_factory=dict)
    ahead: dict[str, int] = field(default_factory=dict)


def new_window(start_ms: int, end_ms: int) -> WindowProgress:
    return WindowProgress(start_ms, end_ms, Position(start_ms, end_ms))


@dataclass(frozen=True)
class State:
    # The end of the last completed window, and the ids delivered within the overlap before it.
    watermark_ms: int | None = None
    delivered: Mapping[str, int] = field(default_factory=dict)
    window: WindowProgress | None = None
    lease: Lease | None = None
    origin: str = "collector"  # or ORIGIN_GUIDE


def encode_state(state: State, *, updated_ms: int, version: str) -> bytes:
    document = {
        "version": STATE_VERSION,
        "watermark_ms": state.watermark_ms,
        "delivered": state.delivered,
        "window": _encode_window(state.window) if state.window else None,
        "lease": asdict(state.lease) if state.lease else None,
        "updated_ms": updated_ms,
        "collector_version": version,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _encode_window(window: WindowProgress) -> dict:
    return {
        **{name: getattr(window, name) for name in (*_WINDOW_INTS, "committed", "ahead")},
        **{name: getattr(window.position, name) for name in _POSITION_FIELDS},
        "edge_ids": sorted(window.position.edge_ids),
    }


def decode_state(data: bytes) -> State:
    """Parse a checkpoint (ours or the guide's); raise StateCorrupt saying what is wrong."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # a UnicodeDecodeError is a ValueError
        raise StateCorrupt(f"it is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise StateCorrupt("it is not a JSON object")
    if "version" not in document and "since" in document:
        # The guide's {"since": ms, "pageToken": ...}: its token belongs to a request that
        # cannot be rebuilt, so the window restarts at since less the overlap instead.
        since = document["since"]
        if type(since) is not int or not 0 < since <= MAX_EPOCH_MS:
            raise StateCorrupt(
                f"it looks like the guide's format but 'since' is {reprlib.repr(since)}, not epoch "
                "milliseconds"
            )
        return State(watermark_ms=since, origin=ORIGIN_GUIDE)
    version = document.get("version")
    if type(version) is not int or version != STATE_VERSION:  # 2.0 is not version 2
        raise StateCorrupt(
            f"its version is {reprlib.repr(version)}, this collector reads version {STATE_VERSION} "
            "(or the guide's {'since': ...} format)"
        )
    try:
        raw_window, lease = document.get("window"), document.get("lease")
        if lease and not isinstance(lease["owner"], str):
            raise TypeError("lease.owner must be a string")
        return State(
            watermark_ms=_optional_ms(document, "watermark_ms"),
            delivered=_id_map(document.get("delivered", {}), "delivered"),
            window=_decode_window(raw_window) if raw_window else None,
            lease=Lease(lease["owner"], _number(lease, "expires_ms")) if lease else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateCorrupt(f"a field is missing or has the wrong type ({exc})") from None


def check_times(state: State, now_ms: int, *, max_lookback_ms: int) -> None:
    """Refuse times no run of this collector can have saved: one beyond the longest
    lookback would deliver the account's history again."""
    window, times = state.window, {"watermark_ms": state.watermark_ms}
    if window is not None:
        times |= {"window's start_ms": window.start_ms, "window's end_ms": window.end_ms}
    days = max_lookback_ms // 86_400_000
    for name, value in times.items():
        if value is not None and value > now_ms + CLOCK_SKEW_MS:
            skip = "resuming from it would skip every event until then"
            raise StateCorrupt(f"its {name} {value} lies after now ({now_ms}): {skip}")
        if value is not None and value < now_ms - max_lookback_ms:
            lookback = f"the longest lookback this collector reads ({days} days)"
            raise StateCorrupt(f"its {name} {value} is older than {lookback}")


def _decode_window(raw: dict) -> WindowProgress:
    order, edge_ids, pending = raw.get("order"), raw.get("edge_ids", []), raw.get("pending", [])
    if order is not None and order not in ORDERS:
        raise ValueError(f"window.order {reprlib.repr(order)}")
    if not isinstance(edge_ids, list) or not all(isinstance(i, str) for i in edge_ids):
        raise TypeError("window.edge_ids must be a list of auditId strings")
    if not isinstance(pending, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(map(_is_ms, pair)) for pair in pending
    ):
        raise TypeError("window.pending must be a list of [start_ms, end_ms] pairs")
    if not isinstance(raw.get("burst_new", False), bool):
        raise TypeError("window.burst_new must be true or false")
    position = Position(
        **{name: _number(raw, name, *bounds) for name, bounds in _POSITION_INTS.items()},
        order=order,
        edge_ids=frozenset(edge_ids),
        burst_ms=_optional_ms(raw, "burst_ms"),
        burst_new=raw.get("burst_new", False),
        pending=tuple((low, high) for low, high in pending),
    )
    window = WindowProgress(
        **{name: _number(raw, name, *bounds) for name, bounds in _WINDOW_INTS.items()},
        position=position,
        committed=_id_map(raw.get("committed", {}), "window.committed"),
        ahead=_id_map(raw.get("ahead", {}), "window.ahead"),
    )
    start, end = window.start_ms, window.end_ms
    if end < start:
        raise ValueError("window ends before it starts")
    # Read up to its end oldest first, a window's lower_ms is one past the end.
    if not start <= position.lower_ms <= end + 1 or position.upper_ms > end:
        raise ValueError("window position lies outside the window")
    inside = [position.burst_ms, *(ms for pair in position.pending for ms in pair)]
    if any(ms is not None and not start <= ms <= end for ms in inside):
        raise ValueError("window.burst_ms or window.pending lies outside the window")
    return window


def _id_map(raw, name: str) -> dict[str, int]:
    # A JSON object's keys are strings: only its values need checking.
    if not isinstance(raw, dict) or not all(map(_is_ms, raw.values())):
        raise TypeError(f"{name} must map auditId strings to epoch milliseconds")
    return raw


def _number(raw: dict, name: str, low: int = 0, high: int | None = MAX_EPOCH_MS) -> int:
    value = raw[name]
    if type(value) is int and low <= value and (high is None or value <= high):
        return value
    must = f"a whole number from {low}" if high is None else "epoch milliseconds (1970 to 9999)"
    raise ValueError(f"{name} must be {must}, not {reprlib.repr(value)}")


def _optional_ms(raw: dict, name: str) -> int | None:
    return None if raw.get(name) is None else _number(raw, name)


def _is_ms(value) -> bool:
    return type(value) is int and 0 <= value <= MAX_EPOCH_MS  # a bool is not an int here
