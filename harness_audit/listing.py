"""The audit listing's shapes: the request body, cursors, pages, and how a page is decoded.

Pure: nothing here does I/O. The client sends what ``AuditQuery`` says and hands the body
it gets back to ``parse_page``; the pager uses ``guess_next_cursor`` to send the next request
before a page is decoded.
"""

import functools
import json
import re
from dataclasses import dataclass
from json.decoder import scanstring

from urllib3.exceptions import ProtocolError

LIST_V2 = "listV2"
LIST = "list"


@dataclass(frozen=True)
class AuditQuery:
    """The request body: fixed for a whole window, every page and every resumed run."""

    start_ms: int
    end_ms: int
    modules: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    static_filter: str | None = None

    @functools.cached_property
    def body(self) -> bytes:
        body: dict = {"filterType": "Audit", "startTime": self.start_ms, "endTime": self.end_ms}
        if self.modules:
            body["modules"] = list(self.modules)
        if self.actions:
            body["actions"] = list(self.actions)
        if self.static_filter:
            body["staticFilter"] = self.static_filter
        return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: a listV2 page token, or a page index on the list endpoint."""

    endpoint: str = LIST_V2
    token: str | None = None
    index: int = 0

    @property
    def is_first_page(self) -> bool:
        return self.token is None and self.index == 0


@dataclass(frozen=True)
class Page:
    events: list
    next_cursor: Cursor | None  # None: the window has no more pages
    # Each event's JSON text exactly as Harness sent it (None where it spans lines).
    sources: list[str | None] | None = None


class MalformedPage(ProtocolError):
    """A 2xx whose body is not the JSON envelope we expect: a failed request, so retried."""


def parse_page(data: bytes, cursor: Cursor, page_size: int) -> Page:
    try:
        payload, sources = decode_with_sources(data)
    except UnicodeDecodeError as exc:
        raise MalformedPage(f"not UTF-8 at byte {exc.start}") from None
    except ValueError as exc:
        raise MalformedPage(f"invalid JSON: {exc}") from None
    if not isinstance(payload, dict) or payload.get("status") != "SUCCESS":
        raise MalformedPage("no SUCCESS envelope")
    page = payload.get("data")
    content = page.get("content") if isinstance(page, dict) else None
    if not isinstance(content, list):
        raise MalformedPage("data.content is not a list")
    if cursor.endpoint == LIST_V2:
        token = page.get("pageToken")
        if not page.get("hasNext"):
            return Page(content, None, sources)
        if not isinstance(token, str) or not token:
            raise MalformedPage("hasNext is true but there is no pageToken")
        return Page(content, Cursor(endpoint=LIST_V2, token=token), sources)
    total_pages = page.get("totalPages")
    if isinstance(total_pages, int):
        has_next = cursor.index + 1 < total_pages
    else:
        has_next = len(content) >= page_size
    next_cursor = Cursor(endpoint=LIST, index=cursor.index + 1) if has_next else None
    return Page(content, next_cursor, sources)


_ENVELOPE_TAIL_BYTES = 4096
_HAS_NEXT = re.compile(rb'"hasNext"\s*:\s*(true|false)')
_PAGE_TOKEN = re.compile(rb'"pageToken"\s*:\s*("(?:[^"\\]|\\.)*"|null)')


def guess_next_cursor(data: bytes, cursor: Cursor) -> Cursor | None:
    """The next listV2 cursor, read from the end of a page without decoding it.

    Harness writes the envelope's hasNext and pageToken after the content array, so the
    last matches in the body's tail are the envelope's. This is only a guess, to send the
    next request while this page is decoded: the decoded page is the truth, and a wrong
    guess costs one discarded request, never a page.
    """
    if cursor.endpoint != LIST_V2:
        return None
    tail = data[-_ENVELOPE_TAIL_BYTES:]
    has_next = _HAS_NEXT.findall(tail)
    tokens = _PAGE_TOKEN.findall(tail)
    if not has_next or has_next[-1] != b"true" or not tokens or tokens[-1] == b"null":
        return None
    try:
        token = json.loads(tokens[-1])
    except ValueError:
        return None
    return Cursor(endpoint=LIST_V2, token=token) if isinstance(token, str) and token else None


_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def decode_with_sources(data: bytes) -> tuple[object, list[str | None]]:
    """Decode a page, keeping the exact text of each element of ``data.content``.

    Writing that text instead of re-encoding the decoded event saves a JSON encode per
    event (a third of the collector's CPU) and writes the event byte for byte as Harness
    sent it. An element whose text spans lines gets None: it is re-encoded, compactly.
    Raises ValueError for anything that is not one complete JSON document.
    """
    text = data.decode("utf-8")
    sources: list[str | None] = []
    # JSON strings cannot hold raw line breaks: without any in the body, no element spans
    # lines and none needs checking.
    single_line = b"\n" not in data and b"\r" not in data
    value, end = _value(text, _skip(text, 0), ("data", "content"), (sources, single_line))
    if _skip(text, end) != len(text):
        raise ValueError(f"extra data at character {end}")
    return value, sources


def _skip(text: str, pos: int) -> int:
    return _WHITESPACE.match(text, pos).end()


def _value(text: str, pos: int, path: tuple, sources: tuple) -> tuple[object, int]:
    """Decode the value at ``pos``; walk into objects along ``path``, whose last key names
    the array whose elements' texts are collected."""
    if not path or text[pos : pos + 1] != "{":
        return _DECODER.raw_decode(text, pos)
    result: dict = {}
    pos = _skip(text, pos + 1)
    if text[pos : pos + 1] == "}":
        return result, pos + 1
    while True:
        if text[pos : pos + 1] != '"':
            raise ValueError(f"expected a key at character {pos}")
        key, pos = scanstring(text, pos + 1)
        pos = _skip(text, pos)
        if text[pos : pos + 1] != ":":
            raise ValueError(f"expected ':' at character {pos}")
        pos = _skip(text, pos + 1)
        if key != path[0]:
            result[key], pos = _DECODER.raw_decode(text, pos)
        elif len(path) > 1:
            result[key], pos = _value(text, pos, path[1:], sources)
        else:
            result[key], pos = _array_with_sources(text, pos, sources)
        pos = _skip(text, pos)
        if text[pos : pos + 1] == "}":
            return result, pos + 1
        if text[pos : pos + 1] != ",":
            raise ValueError(f"expected ',' or '}}' at character {pos}")
        pos = _skip(text, pos + 1)


def _array_with_sources(text: str, pos: int, collect: tuple) -> tuple[object, int]:
    if text[pos : pos + 1] != "[":
        return _DECODER.raw_decode(text, pos)  # not a list: the caller reports it
    sources, single_line = collect
    items: list = []
    sources.clear()
    scan = _DECODER.scan_once  # raw_decode without its Python frame: this loop is the hot path
    pos = _skip(text, pos + 1)
    if text[pos : pos + 1] == "]":
        return items, pos + 1
    while True:
        try:
            item, end = scan(text, pos)
        except StopIteration as stop:
            raise json.JSONDecodeError("Expecting value", text, stop.value) from None
        items.append(item)
        source = text[pos:end]
        if single_line or ("\n" not in source and "\r" not in source):
            sources.append(source)
        else:
            sources.append(None)
        # Compact JSON (what Harness sends) needs no whitespace skipping: look first.
        separator = text[end : end + 1]
        if separator not in (",", "]"):
            end = _skip(text, end)
            separator = text[end : end + 1]
        if separator == "]":
            return items, end + 1
        if separator != ",":
            raise ValueError(f"expected ',' or ']' at character {end}")
        pos = end + 1
        if text[pos : pos + 1] != "{":
            pos = _skip(text, pos)
