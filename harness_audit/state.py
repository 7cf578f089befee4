"""The checkpoint's content and its encoding. Pure: no I/O here.

One JSON object holds everything a run needs to continue exactly where the last one
stopped:

- ``watermark_ms``: the end of the last completed window. The next window starts
  OVERLAP_SECONDS before it, to catch records that became visible late.
- ``delivered``: ``{auditId: timestamp}`` of events stamped at or after
  ``watermark - overlap``, already delivered, so the overlap is not written twice.
- ``window``: a window still being paged (deadline, failure, crash): its fixed bounds,
  the cursor of its next page, the next part number, and the ids of what it has written.
- ``lease``: which run owns the checkpoint, and until when.

The guide's format (``{"since": ms, "pageToken": ...}``) is read too, so a deployment of
the guide's function can be replaced without a gap.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness_audit.errors import StateCorrupt
from harness_audit.listing import LIST, LIST_V2, Cursor

STATE_VERSION = 1
ORIGIN_COLLECTOR = "collector"
ORIGIN_GUIDE = "guide"


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
    cursor: Cursor = field(default_factory=Cursor)
    next_part: int = 1
    pages: int = 0
    events_written: int = 0
    # Ids (with timestamps) written by this window and stamped within the last overlap.
    committed: dict[str, int] = field(default_factory=dict)
    # Ids found in parts that an earlier attempt wrote beyond our checkpoint (crash recovery).
    ahead: dict[str, int] = field(default_factory=dict)


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
    return {
        "start_ms": window.start_ms,
        "end_ms": window.end_ms,
        "endpoint": window.cursor.endpoint,
        "page_token": window.cursor.token,
        "page_index": window.cursor.index,
        "next_part": window.next_part,
        "pages": window.pages,
        "events_written": window.events_written,
        "committed": window.committed,
        "ahead": window.ahead,
    }


def decode_state(data: bytes) -> State:
    """Parse a checkpoint (ours or the guide's); raise StateCorrupt saying what is wrong."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateCorrupt(f"it is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise StateCorrupt("it is not a JSON object")
    if "version" not in document and "since" in document:
        return _decode_guide(document)
    if document.get("version") != STATE_VERSION:
        raise StateCorrupt(
            f"its version is {document.get('version')!r}, this collector reads version "
            f"{STATE_VERSION} (or the guide's {{'since': ...}} format)"
        )
    try:
        return State(
            watermark_ms=_optional_int(document, "watermark_ms"),
            delivered=_id_map(document.get("delivered", {}), "delivered"),
            window=_decode_window(document["window"]) if document.get("window") else None,
            lease=_decode_lease(document["lease"]) if document.get("lease") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StateCorrupt(f"a field is missing or has the wrong type ({exc})") from None


def _decode_guide(document: dict) -> State:
    since = document.get("since")
    if not _is_int(since) or since <= 0:
        raise StateCorrupt(
            f"it looks like the guide's format but 'since' is {since!r}, not epoch milliseconds"
        )
    # The guide's pageToken belongs to a request body we cannot rebuild (its endTime moved
    # on every page): the window restarts at `since` minus the overlap instead.
    return State(watermark_ms=since, origin=ORIGIN_GUIDE)


def _decode_window(raw: dict) -> WindowProgress:
    endpoint = raw["endpoint"]
    if endpoint not in (LIST_V2, LIST):
        raise ValueError(f"window.endpoint {endpoint!r}")
    token = raw.get("page_token")
    if token is not None and not isinstance(token, str):
        raise TypeError("window.page_token must be a string or null")
    window = WindowProgress(
        start_ms=_int(raw, "start_ms"),
        end_ms=_int(raw, "end_ms"),
        cursor=Cursor(endpoint=endpoint, token=token, index=_int(raw, "page_index")),
        next_part=_int(raw, "next_part"),
        pages=_int(raw, "pages"),
        events_written=_int(raw, "events_written"),
        committed=_id_map(raw.get("committed", {}), "window.committed"),
        ahead=_id_map(raw.get("ahead", {}), "window.ahead"),
    )
    if window.end_ms < window.start_ms or window.next_part < 1:
        raise ValueError("window bounds or part number are inconsistent")
    return window


def _decode_lease(raw: dict) -> Lease:
    owner = raw["owner"]
    if not isinstance(owner, str):
        raise TypeError("lease.owner must be a string")
    return Lease(owner=owner, expires_ms=_int(raw, "expires_ms"))


def _id_map(raw, name: str) -> dict[str, int]:
    if not isinstance(raw, dict) or not all(
        isinstance(key, str) and _is_int(value) for key, value in raw.items()
    ):
        raise TypeError(f"{name} must map auditId strings to epoch milliseconds")
    return raw


def _int(raw: dict, name: str) -> int:
    value = raw[name]
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    return value


def _optional_int(raw: dict, name: str) -> int | None:
    return None if raw.get(name) is None else _int(raw, name)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
