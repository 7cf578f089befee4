"""A hostile stand-in for Harness's audit API: answers built to exhaust a client's memory or time.

For tests of a collector that must stay bounded in memory and time whatever the server sends.
Stdlib only. It listens on 127.0.0.1 only (port 0: a free one), answers from daemon threads,
and makes no outgoing connection of any kind: nothing it sends leaves the loopback interface.
``stop()`` (or leaving the ``with`` block) closes the listening socket and every open
connection, which ends the endless and slow answers at once.

    with HostileHarness("gzip_bomb", delegate=sim, at_requests={3}) as harness:
        ... point the collector at harness.url ...

A mode (``kind``) answers POSTs to both listing paths (``/audit/api/audits/listV2`` and
``/audit/api/audits/list``). With ``at_requests`` (any container of request numbers, 1 for the
first request to a listing path, e.g. ``{3}`` or ``range(5, 10**9)``) only those requests get
the mode; every other request (and every request to another path) is answered by the
``delegate`` HarnessSimulator in process, exactly as it would answer it itself (recording,
faults, throttle and all; the delegate need not be started). Without a delegate, an empty
default simulator stands in. Modes that start from "a normal page" (``non_object_items``,
``out_of_window``, ``nan``) take it from the delegate (without recording it there) and pass
its non-200 answers through unchanged.

Modes and their keyword parameters (sizes in bytes; times in real seconds):

``gzip_bomb`` (size=500_000_000)
    200 with ``Content-Encoding: gzip`` (never asked for) whose body inflates to exactly
    ``size`` bytes of a valid-JSON SUCCESS page holding one long string in ``data.content``.
    The compressed bytes (about size/1000) are built once, without ever holding the
    inflated text.
``huge_page`` (size=200_000_000)
    200 with ``Content-Length: size``: a valid page of that many bytes of distinct small
    in-window events, generated chunk by chunk while it is sent.
``endless_chunked`` (interval_s=0.0)
    200 ``Transfer-Encoding: chunked``: a page's opening, then event chunks for ever, until
    the client goes away or ``stop()``; ``interval_s`` between chunks.
``trickle`` (interval_s=1.0, head_first=False)
    A normal (delegate's) answer, one byte every ``interval_s`` seconds, status line
    included; with ``head_first`` the status line and headers go at once, then the body
    trickles.
``silent``
    Reads the request and never answers (until the client goes away or ``stop()``).
``deep_nesting`` (depth=5000, status=200)
    A 200 page whose one event holds ``depth`` nested objects in ``auditEventData``; with
    ``status`` 401 or 503 the same nesting in an error envelope's ``detailedMessage``.
``status_error_200`` (code="INTERNAL_SERVER_ERROR", message="...")
    HTTP 200 with ``{"status":"ERROR","code":...,"message":...}``.
``non_object_items``
    A normal page whose ``data.content`` has strings, numbers, null, booleans and a list
    between the real events.
``huge_error_message`` (status=500, size=5_000_000)
    A JSON error envelope (400: ``FAILURE``/``INVALID_REQUEST``; else ``ERROR``) whose
    ``message`` is ``size`` characters.
``out_of_window``
    A normal page plus events stamped before the request's ``startTime`` (one negative) and
    after its ``endTime`` (one far in the future), and one in-window event served twice
    (the same auditId).
``nan``
    A normal page plus an event whose ``auditEventData`` holds ``NaN``, ``Infinity``,
    ``-Infinity`` and ``1e400``.
``unplaceable_timestamp``
    A normal page whose second event (when it has two) is stamped with an ISO date string
    instead of epoch milliseconds: an item no millisecond can hold.

``requests`` records every request as a ``HostileRequest`` (n, path, query, body, hostile);
``hostile_count`` is how many got the mode.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Container
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

from devtools.harness_simulator import (
    LIST_PATH,
    LISTV2_PATH,
    HarnessSimulator,
    _Handler,
    _Response,
    _Server,
    stop_server,
)
from devtools.sample_events import generate_events

__all__ = ["KINDS", "HostileHarness", "HostileRequest"]

_JSON = "application/json"
_LISTING_PATHS = (LISTV2_PATH, LIST_PATH)

# kind -> its parameters and their defaults
KINDS: dict[str, dict[str, Any]] = {
    "gzip_bomb": {"size": 500_000_000},
    "huge_page": {"size": 200_000_000},
    "endless_chunked": {"interval_s": 0.0},
    "trickle": {"interval_s": 1.0, "head_first": False},
    "silent": {},
    "deep_nesting": {"depth": 5000, "status": 200},
    "status_error_200": {
        "code": "INTERNAL_SERVER_ERROR",
        "message": "Oops, something went wrong on our end. Please contact Harness Support.",
    },
    "non_object_items": {},
    "huge_error_message": {"status": 500, "size": 5_000_000},
    "out_of_window": {},
    "nan": {},
    "unplaceable_timestamp": {},
}

_CHUNK = 64 * 1024
_FAR_FUTURE_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_CORRELATION_ID = "00000000-0000-4000-8000-00000000bad0"


@dataclass(frozen=True)
class HostileRequest:
    """One request as the hostile harness saw it (``n`` is 0 off the listing paths)."""

    n: int
    path: str
    query: dict[str, str]
    body: dict | None
    hostile: bool


def _page_prefix() -> bytes:
    return b'{"status":"SUCCESS","data":{"content":['


def _page_suffix(count: int) -> bytes:
    # Both endpoints' fields, so either client finds what it reads.
    return (
        b'],"pageSize":100,"hasNext":false,"pageToken":null,"pageIndex":0,'
        b'"pageItemCount":%d,"totalItems":%d,"totalPages":1,"empty":false},'
        b'"metaData":null,"correlationId":"%s"}' % (count, count, _CORRELATION_ID.encode())
    )


@lru_cache(maxsize=4)
def _gzip_bomb(size: int) -> bytes:
    """A gzip member inflating to exactly ``size`` bytes: a page with one long string.

    Deflate output after a full flush depends only on the input that follows, so one
    compressed megabyte of filler is repeated instead of compressing the whole text.
    """
    prefix = _page_prefix() + b'"'
    suffix = b'"' + _page_suffix(1)
    fill = size - len(prefix) - len(suffix)
    if fill < 0:
        raise ValueError(f"gzip_bomb size must be at least {len(prefix) + len(suffix)}")
    block = b"A" * (1 << 20)
    blocks, rest = divmod(fill, len(block))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    steady = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    if comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH) != steady:
        raise RuntimeError("zlib's output after a full flush is not repeatable here")
    tail = comp.compress(block[:rest]) + comp.compress(suffix) + comp.flush()
    body = [head]
    if blocks:
        body.append(first)
        body.append(steady * (blocks - 1))
    body.append(tail)
    crc = zlib.crc32(prefix)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(suffix, zlib.crc32(block[:rest], crc))
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # no name, mtime 0, max compression
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
    return b"".join([header, *body, trailer])


def _window(body: dict | None) -> tuple[int, int]:
    """The request's [startTime, endTime], or a recent hour when absent."""
    now = time.time_ns() // 1_000_000
    body = body if isinstance(body, dict) else {}
    start, end = body.get("startTime"), body.get("endTime")
    end = end if isinstance(end, int) and not isinstance(end, bool) else now
    start = start if isinstance(start, int) and not isinstance(start, bool) else end - 3_600_000
    return start, end


def _small_event(audit_id: str, ts: int, **extra: Any) -> dict:
    event = {
        "auditId": audit_id,
        "resourceScope": {"accountIdentifier": "simAccount0000000000001"},
        "timestamp": ts,
        "authenticationInfo": {"principal": {"type": "USER", "identifier": "x@example.com"}},
        "module": "CORE",
        "resource": {"type": "USER", "identifier": "x@example.com"},
        "action": "UPDATE",
    }
    event.update(extra)
    return event


def _dumps(obj: Any) -> bytes:
    # The simulator's own encoding (compact, ASCII), so re-encoded events keep their bytes.
    return json.dumps(obj, separators=(",", ":")).encode()


class _HostileHandler(_Handler):
    _body: bytes | None = None

    def _dispatch(self) -> None:
        self._body = None  # a kept-alive connection brings a new request, with a new body
        self.server.harness._handle(self)  # type: ignore[attr-defined]

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _dispatch

    def read_body(self) -> bytes:
        # Read once: the delegate reads it again when it answers.
        if self._body is None:
            self._body = super().read_body()
        return self._body


class HostileHarness:
    """A misbehaving audit API on loopback. See the module docstring."""

    def __init__(
        self,
        kind: str,
        *,
        delegate: HarnessSimulator | None = None,
        at_requests: Container[int] | None = None,
        **params: Any,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
        unknown = set(params) - set(KINDS[kind])
        if unknown:
            raise ValueError(
                f"{kind} takes {sorted(KINDS[kind]) or 'no parameters'}, got {unknown}"
            )
        self.kind = kind
        self.params = {**KINDS[kind], **params}
        self.delegate = delegate if delegate is not None else HarnessSimulator()
        self.at_requests = at_requests
        self._mode: Callable[[_HostileHandler, dict | None], None] = getattr(self, f"_{kind}")
        self.requests: list[HostileRequest] = []
        self.listing_requests = 0
        self.hostile_count = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._prepare()

    def _prepare(self) -> None:
        p = self.params
        if self.kind == "gzip_bomb":
            self._bomb = _gzip_bomb(int(p["size"]))
        elif self.kind == "huge_error_message":
            if p["status"] == 400:
                envelope = {
                    "status": "FAILURE",
                    "code": "INVALID_REQUEST",
                    "message": "",
                    "errors": [],
                }
            else:
                envelope = {
                    "status": "ERROR",
                    "code": "UNKNOWN_ERROR",
                    "message": "",
                    "correlationId": _CORRELATION_ID,
                    "detailedMessage": None,
                    "responseMessages": [],
                }
            before, after = _dumps(envelope).split(b'"message":""', 1)
            message = b"Internal error: " + b"x" * max(0, int(p["size"]) - 16)
            self._error_body = b"".join((before, b'"message":"', message, b'"', after))
        elif self.kind == "deep_nesting":
            depth = int(p["depth"])
            if depth < 1:
                raise ValueError("depth must be >= 1")
            if p["status"] not in (200, 401, 503):
                raise ValueError("deep_nesting status must be 200, 401 or 503")
        elif self.kind in ("trickle", "endless_chunked") and not p["interval_s"] >= 0:
            raise ValueError("interval_s must be >= 0")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 (``port`` 0: a free one) in a daemon thread; return the URL."""
        if self._server is not None:
            raise RuntimeError("hostile harness already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", port), self.delegate, _HostileHandler)
        server.harness = self  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name=f"hostile-harness:{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self.url

    def stop(self) -> None:
        """Stop serving; end every answer in progress and close every connection. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        self._stopping.set()
        server.close_connections()  # breaks writes blocked on a client that stopped reading
        stop_server(server, thread)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("hostile harness not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("hostile harness not started")
        return self._server.server_port

    def __enter__(self) -> HostileHarness:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- dispatch ----------------------------------------------------------------------------

    def _handle(self, handler: _HostileHandler) -> None:
        try:
            raw = handler.read_body()
        except (ValueError, OSError):
            raw = b""
            handler._body = b""
        path, _, query_string = handler.path.partition("?")
        query = {k: v[0] for k, v in parse_qs(query_string, keep_blank_values=True).items() if v}
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            body = None
        body = body if isinstance(body, dict) else None
        with self._lock:
            n = 0
            hostile = False
            if path in _LISTING_PATHS:
                self.listing_requests += 1
                n = self.listing_requests
                hostile = self.at_requests is None or n in self.at_requests
                self.hostile_count += hostile
            self.requests.append(HostileRequest(n, path, query, body, hostile))
        if not hostile:
            self.delegate._serve(handler)
            return
        handler.close_connection = True  # one hostile answer per connection
        with contextlib.suppress(OSError):  # the client went away, or stop()
            self._mode(handler, body)

    def _normal(self, handler: _HostileHandler, body: dict | None) -> _Response:
        """The delegate's answer to this request, built in process and not recorded there."""
        sim = self.delegate
        path, _, query_string = handler.path.partition("?")
        query = {k: v[0] for k, v in parse_qs(query_string, keep_blank_values=True).items() if v}
        key = (handler.headers.get("x-api-key") or "").encode("utf-8", "surrogateescape")
        return sim._respond(handler.command, path, query, body, key == sim._api_key_bytes)

    def _idle(self, handler: _HostileHandler, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the client hangs up or stop() is called."""
        deadline = time.monotonic() + seconds
        conn = handler.connection
        while True:
            if self._stopping.is_set():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            try:
                readable, _, _ = select.select([conn], [], [], min(left, 0.05))
                if readable and not conn.recv(1, socket.MSG_PEEK):
                    return False  # orderly close by the client
            except (OSError, ValueError):
                return False
            if readable:  # the client sent more: ignore it, but do not spin
                self._stopping.wait(min(left, 0.05))

    def _write(self, handler: _HostileHandler, data: bytes) -> None:
        if self._stopping.is_set():
            raise OSError("stopping")
        handler.wfile.write(data)

    def _send(self, handler: _HostileHandler, resp: _Response) -> None:
        head = handler.head_bytes(resp.status, resp.content_type, len(resp.body), resp.headers)
        self._write(handler, head + resp.body)

    def _splice_page(
        self, handler: _HostileHandler, body: dict | None, items: Callable[[list], list[bytes]]
    ) -> None:
        """Send the delegate's page with ``data.content`` replaced by ``items(content)``."""
        resp = self._normal(handler, body)
        if resp.status != 200:
            self._send(handler, resp)
            return
        page = json.loads(resp.body)
        raw_items = items(page["data"]["content"])
        page["data"]["content"] = ["\x00splice\x00"]
        page["data"]["pageItemCount"] = len(raw_items)
        before, after = _dumps(page).split(b'["\\u0000splice\\u0000"]', 1)
        out = b"".join((before, b"[", b",".join(raw_items), b"]", after))
        self._send(handler, _Response(200, out, _JSON))

    # -- modes -------------------------------------------------------------------------------

    def _gzip_bomb(self, handler: _HostileHandler, body: dict | None) -> None:
        bomb = self._bomb
        head = handler.head_bytes(200, _JSON, len(bomb), (("Content-Encoding", "gzip"),))
        self._write(handler, head)
        for i in range(0, len(bomb), _CHUNK):
            self._write(handler, bomb[i : i + _CHUNK])

    def _event_chunks(self, body: dict | None) -> tuple[Callable[[int, int], bytes], int]:
        """(make(first, count) -> bytes of `count` events and commas, bytes per event)."""
        start, end = _window(body)
        ts = max(start, min(end, start + (end - start) // 2))
        template = _dumps(_small_event("%024x", ts, resource={"type": "USER", "identifier": "%s"}))
        template = template.replace(b'"%s"', b'"u%010d"') + b","

        def make(first: int, count: int) -> bytes:
            return b"".join(template % (n, n) for n in range(first, first + count))

        return make, len(make(0, 1))

    def _huge_page(self, handler: _HostileHandler, body: dict | None) -> None:
        size = int(self.params["size"])
        make, per_event = self._event_chunks(body)
        prefix = _page_prefix()
        events = max(0, (size - len(prefix) - len(_page_suffix(0)) - 1) // per_event)
        suffix = _page_suffix(events)
        pad = size - len(prefix) - len(suffix) - events * per_event
        if events:
            pad += 1  # the last event's comma becomes a space
        if pad < 0:
            raise ValueError("huge_page size is too small for a page")
        self._write(handler, handler.head_bytes(200, _JSON, size) + prefix)
        per_chunk = max(1, _CHUNK // per_event)
        for first in range(0, events, per_chunk):
            chunk = make(first, min(per_chunk, events - first))
            if first + per_chunk >= events:
                chunk = chunk[:-1]  # no comma after the last event
            self._write(handler, chunk)
        self._write(handler, b" " * pad + suffix)

    def _endless_chunked(self, handler: _HostileHandler, body: dict | None) -> None:
        interval = float(self.params["interval_s"])
        make, per_event = self._event_chunks(body)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        prefix = _page_prefix()
        self._write(handler, head + b"%x\r\n%s\r\n" % (len(prefix), prefix))
        per_chunk = max(1, _CHUNK // per_event)
        first = 0
        while True:
            data = make(first, per_chunk)
            first += per_chunk
            self._write(handler, b"%x\r\n%s\r\n" % (len(data), data))
            if interval and not self._idle(handler, interval):
                return

    def _trickle(self, handler: _HostileHandler, body: dict | None) -> None:
        interval = float(self.params["interval_s"])
        resp = self._normal(handler, body)
        head = handler.head_bytes(resp.status, resp.content_type, len(resp.body), resp.headers)
        data = resp.body
        if self.params["head_first"]:
            self._write(handler, head)
        else:
            data = head + data
        for i in range(len(data)):
            if i and not self._idle(handler, interval):
                return
            self._write(handler, data[i : i + 1])

    def _silent(self, handler: _HostileHandler, body: dict | None) -> None:
        while self._idle(handler, 3600.0):
            pass

    def _deep_nesting(self, handler: _HostileHandler, body: dict | None) -> None:
        depth = int(self.params["depth"])
        status = int(self.params["status"])
        nested = b'{"a":' * depth + b"{}" + b"}" * depth
        if status == 200:
            _, end = _window(body)
            event = _dumps(_small_event("d" * 24, end, auditEventData=None))
            event = event.replace(b'"auditEventData":null', b'"auditEventData":' + nested)
            out = _page_prefix() + event + _page_suffix(1)
        else:
            code = "INVALID_TOKEN" if status == 401 else "SERVICE_UNAVAILABLE"
            envelope = {
                "status": "ERROR",
                "code": code,
                "message": "Token is not valid." if status == 401 else "Service unavailable",
                "correlationId": _CORRELATION_ID,
                "detailedMessage": None,
                "responseMessages": [],
            }
            out = _dumps(envelope).replace(
                b'"detailedMessage":null', b'"detailedMessage":' + nested
            )
        self._send(handler, _Response(status, out, _JSON))

    def _status_error_200(self, handler: _HostileHandler, body: dict | None) -> None:
        envelope = {
            "status": "ERROR",
            "code": self.params["code"],
            "message": self.params["message"],
            "correlationId": _CORRELATION_ID,
            "detailedMessage": None,
            "responseMessages": [],
        }
        self._send(handler, _Response(200, _dumps(envelope), _JSON))

    def _huge_error_message(self, handler: _HostileHandler, body: dict | None) -> None:
        self._send(handler, _Response(int(self.params["status"]), self._error_body, _JSON))

    def _non_object_items(self, handler: _HostileHandler, body: dict | None) -> None:
        junk = [b'"not an event"', b"12345", b"null", b"1.5", b"true", b'["a"]', b'""', b"-7"]

        def items(content: list) -> list[bytes]:
            out = [junk[0]]
            for i, event in enumerate(content):
                out += [_dumps(event), junk[(i + 1) % len(junk)]]
            return out

        self._splice_page(handler, body, items)

    def _in_window(self, content: list, body: dict | None) -> list[dict]:
        if content:
            return content
        start, end = _window(body)
        lo, hi = max(0, start), max(0, min(end, 0xFFFFFFFF * 1000 - 1))
        return generate_events(2, min(lo, hi), hi, seed=len(self.requests))

    def _out_of_window(self, handler: _HostileHandler, body: dict | None) -> None:
        start, end = _window(body)

        def items(content: list) -> list[bytes]:
            events = self._in_window(content, body)
            outside = [
                _small_event("0" * 23 + "1", -1_000),
                _small_event("0" * 23 + "2", start - 1),
                _small_event("f" * 23 + "1", end + 1),
                _small_event("f" * 23 + "2", _FAR_FUTURE_MS),
            ]
            raw = [_dumps(e) for e in events]
            out = [_dumps(outside[0]), _dumps(outside[2]), raw[0], _dumps(outside[1])]
            out += [*raw[1:], _dumps(outside[3]), raw[0]]  # raw[0] a second time
            return out

        self._splice_page(handler, body, items)

    def _nan(self, handler: _HostileHandler, body: dict | None) -> None:
        def items(content: list) -> list[bytes]:
            if not content:  # an empty range stays empty: invented events would be written
                return []
            events = content
            bad = dict(events[0])
            bad["auditId"] = "9" * 24
            bad["auditEventData"] = None
            odd = _dumps(bad).replace(
                b'"auditEventData":null',
                b'"auditEventData":{"type":"Metrics","ratio":NaN,"limit":Infinity,'
                b'"floor":-Infinity,"big":1e400}',
            )
            return [odd, *(_dumps(e) for e in events)]

        self._splice_page(handler, body, items)

    def _unplaceable_timestamp(self, handler: _HostileHandler, body: dict | None) -> None:
        def items(content: list) -> list[bytes]:
            if len(content) > 1:
                content[1] = dict(content[1], timestamp="2025-06-10T12:00:00Z")
            return [_dumps(event) for event in content]

        self._splice_page(handler, body, items)
