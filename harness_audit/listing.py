"""The audit listing's shapes: the request body, where a page starts, a decoded page. Pure:
the client sends what ``AuditQuery`` says and hands the body it gets back to ``parse_page``."""

import hashlib
import json
from dataclasses import dataclass

LIST_V2 = "listV2"
LIST = "list"


@dataclass(frozen=True)
class AuditQuery:
    """One request's filter: events stamped in ``[start_ms, end_ms]``, both inclusive."""

    start_ms: int
    end_ms: int
    modules: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    static_filter: str | None = None

    @property
    def body(self) -> bytes:
        body: dict = {"filterType": "Audit", "startTime": self.start_ms, "endTime": self.end_ms}
        optional = {"modules": list(self.modules), "actions": list(self.actions)}
        optional["staticFilter"] = self.static_filter
        body |= {name: value for name, value in optional.items() if value}
        return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PageCursor:
    """Where a page starts within one query: a listV2 page token, or a list page index. Only
    a millisecond holding more than a page is read with it; a new range starts at FIRST_PAGE."""

    token: str | None = None
    index: int = 0
    size: int | None = None  # list: k after a first page of k < PAGE_SIZE, so page 1 follows it


FIRST_PAGE = PageCursor()


@dataclass(frozen=True)
class Page:
    items: list  # data.content as sent: normally AuditEvent objects, but nothing is trusted
    has_more: bool  # list: a full page; listV2: hasNext. Pages may be short all the same
    next_cursor: PageCursor | None  # the endpoint's own next page, when it names one


class MalformedPage(ValueError):
    """A 2xx whose body is not the JSON envelope we expect: a failed request, so retried."""


def parse_page(data: bytes, endpoint: str, cursor: PageCursor, size: int) -> Page:
    """The page in ``data``; MalformedPage when it is not a complete SUCCESS envelope."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedPage(f"invalid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedPage("not a JSON object")
    if (status := payload.get("status")) != "SUCCESS":
        raise MalformedPage(f"status is {status!r}, not SUCCESS ({error_summary(payload)})")
    page = payload.get("data")
    items = page.get("content") if isinstance(page, dict) else None
    if not isinstance(items, list):
        raise MalformedPage("data.content is not a list")
    if endpoint == LIST_V2:
        # Only hasNext says there is more; a token under any other name is no cursor.
        token, has_next = page.get("pageToken"), page.get("hasNext") is True
        usable = has_next and isinstance(token, str) and bool(token)
        return Page(items, has_next, PageCursor(token=token) if usable else None)
    # totalPages comes from a separate count on a secondary and can lag the pages: unused.
    if len(items) >= size:
        return Page(items, True, PageCursor(index=cursor.index + 1))
    # A short first page may be a cap, not the end: the probe asks for what follows it.
    probe = cursor == FIRST_PAGE and bool(items)
    return Page(items, False, PageCursor(index=1, size=len(items)) if probe else None)


def error_summary(payload: object) -> str:
    """Harness's code and message from an error envelope, for logs and errors."""
    code, message, _ = error_fields(payload)
    return f"{code}: {message}" if code or message else "body is not a Harness error envelope"


def error_fields(payload: object) -> tuple[str | None, str | None, str | None]:
    """(code, message, correlationId) of a decoded error envelope; Nones where absent."""
    fields = payload if isinstance(payload, dict) else {}
    texts = [fields.get(name) for name in ("code", "message", "correlationId")]
    return tuple(text if isinstance(text, str) else None for text in texts)


def timestamp_ms(value: object) -> int | None:
    """Epoch ms from an int, a digit string or a whole float; None if it cannot be placed."""
    digits = isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18
    if digits or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def event_identity(event: dict, fallback_ms: int) -> tuple[str, int]:
    """(auditId, timestamp) of an event, whatever its layout. Without an auditId (never seen,
    but not promised) a content hash stands in, so the event is still written exactly once."""
    audit_id = event.get("auditId") or event.get("auditEventId")
    if not isinstance(audit_id, str) or not audit_id:
        digest = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()
        audit_id = "sha256:" + digest[:32]
    timestamp = timestamp_ms(event.get("timestamp", event.get("auditEventTime")))
    return audit_id, fallback_ms if timestamp is None else timestamp
