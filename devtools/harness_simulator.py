"""A local stand-in for Harness's audit API, for integration tests, `make run` and benchmarks.

It serves ``POST /audit/api/audits/listV2`` (token pages) and ``POST /audit/api/audits/list``
(offset pages) over events you add, with Harness's auth, validation and error envelopes, plus
injectable faults (429s, HTML 5xx pages, truncated or cut bodies, resets, latency).

Stdlib only. Every event's JSON is encoded once when added; page bodies are joined bytes, and
a listV2 keyset page costs O(log n + page) (a bisect on the sorted keys), so 200,000 events at
100 per page are served in well under a second of simulator CPU.

    python -m devtools.harness_simulator --events 5000 --latency-ms 1 --port 8089

Behaviours the real API may have (constructor keyword arguments; the defaults are the
simulator's original behaviour; CLI flags in brackets):

``order`` ("newest_first" | "oldest_first") [--order]
    Order of the events in the pages of both endpoints: timestamp descending (Harness's
    ``list``) or ascending.
``ties`` ("stable" | "shuffled") [--ties], with ``seed`` (int, default 0) [--seed]
    "stable" breaks timestamp ties on auditId, the same way on every request. "shuffled"
    puts events sharing a timestamp in a fresh random order on every request (MongoDB with a
    sort on timestamp only), drawn from ``random.Random(seed)``: offset paging (``list``, and
    listV2 with offset tokens) then skips and repeats tied events across pages, as the real
    service would. A keyset token needs a unique order, so keyset listV2 pages are still cut
    on (timestamp, auditId); only the order of tied events inside each page is shuffled.
``listv2_tokens`` ("keyset" | "offset") [--listv2-tokens]
    What a listV2 ``pageToken`` holds: the last (timestamp, auditId) served, continued
    strictly after it, or an offset into the request's result, re-sorted (and, with shuffled
    ties, reshuffled) on every request, so records appearing or ties moving shift the pages.
``count_lag_ms`` (int >= 0, default 0) [--count-lag-ms]
    The ``list`` endpoint's ``totalItems``/``totalPages`` come from a separate count over
    the events visible as of ``clock_ms() - count_lag_ms`` (Harness counts on a secondary):
    they can be lower than what the pages hold.
``throttle`` ((N, window_s) or None) [--throttle N/S]
    At most N requests (any path) in any sliding window of window_s seconds on the
    simulator's clock (``clock_ms``, so a fake clock works); beyond that the request is
    answered 429 with an HTML body and no Retry-After, as Harness's Cloud Armor edge does.
    Rejected requests do not use up the allowance. ``throttled`` counts the 429s sent; they
    are recorded with ``fault="throttle"`` and consume no injected fault.
``page_cap`` (int >= 1 or None) [--page-cap]
    Serve at most this many events a page, whatever ``pageSize`` asked, and say nothing:
    ``list`` still starts page i at i times the size asked (so a millisecond holding more
    than the cap skips events), listV2 pages and tokens follow what was served.
``cursor_field`` (str, default "pageToken") [--cursor-field]
    The name of listV2's next-page token in ``data`` (e.g. "nextPageToken").
``timestamps`` ("int" | "string" | "float" | "mixed") [--timestamps]
    How ``timestamp`` is written in pages: an integer, a digit string, a whole float, or
    those three in turn.
``endless_cursor`` (bool) [--endless-cursor]
    listV2 answers every page that has more with one same token, and that token with the
    first page again: a cursor that never ends.
``unique_ids`` (bool, default True) [--duplicate-ids]
    False lets one auditId be stored at two timestamps.
``on_request`` (callable(n) or None)
    Called with n, the number of requests so far to the two listing paths (1 for the first),
    before each such request is answered; one call at a time, in order. It may call
    ``add_events``; an exception drops that request's connection.

``add_events(events, visible_at_ms=None, *, visible_after_requests=None)``: events are served
once ``clock_ms() >= visible_at_ms``; with ``visible_after_requests=K`` they are also held
back from the first K requests to the listing paths (whatever those requests are answered,
throttled ones included) and become visible to request K+1 and later, as if added the moment
it arrived. ``listing_requests`` is the count so far. Every request is recorded in
``requests`` (path, query, JSON body with startTime/endTime, status, fault), the API key
redacted.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import gc
import hashlib
import hmac
import http
import io
import json
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from devtools.sample_events import generate_events

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_API_KEY",
    "FAULT_KINDS",
    "LISTV2_PATH",
    "LISTV2_TOKENS",
    "LIST_PATH",
    "ORDERS",
    "TIES",
    "TIMESTAMPS",
    "HarnessSimulator",
    "RecordedRequest",
    "main",
]

DEFAULT_ACCOUNT_ID = "simAccount0000000000001"
DEFAULT_API_KEY = "sat.simAccount0000000000001.simtoken.simsecret"

LISTV2_PATH = "/audit/api/audits/listV2"
LIST_PATH = "/audit/api/audits/list"

ORDERS = ("newest_first", "oldest_first")
TIES = ("stable", "shuffled")
LISTV2_TOKENS = ("keyset", "offset")
TIMESTAMPS = ("int", "string", "float", "mixed")
_ENDLESS = "endless"

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100

LOGIN_ACTIONS = frozenset({"LOGIN", "LOGIN2FA", "UNSUCCESSFUL_LOGIN"})
STATIC_FILTERS = frozenset({"EXCLUDE_LOGIN_EVENTS", "EXCLUDE_SYSTEM_EVENTS"})

# Fault kinds accepted by inject(); the ones ending in ":" take an argument.
FAULT_KINDS = (
    "429",
    "429_retry_after:",
    "502_html",
    "503_html",
    "500_json",
    "truncated_200",
    "cut",
    "reset",
    "latency:",
    "401",
    "403",
    "400",
)
_SIMPLE_FAULTS = frozenset(k for k in FAULT_KINDS if not k.endswith(":"))

_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"

_NEVER_HIDDEN = -(1 << 62)  # visible_at for events visible immediately

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _event_encoder() -> Callable[[dict], bytes]:
    """Compact JSON bytes for one event, as fast as the stdlib allows.

    json's C encoder, built once and reused (JSONEncoder.encode rebuilds it on every call,
    a quarter of the cost for a small event). ASCII output: non-ASCII characters go out
    as \\u escapes, which decode to the same strings.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # not CPython's C accelerator: the plain way
        plain = json.JSONEncoder(separators=(",", ":"))
        return lambda event: plain.encode(event).encode()
    encoder = make(
        None,  # markers: no circular-reference check, events are trees
        _ENCODER.default,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )
    join = "".join
    return lambda event: join(encoder(event, 0)).encode()


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator saw it. Never holds the API key.

    ``status`` is the status line sent (0 when the connection was reset without a response);
    ``fault`` names the injected fault that answered it, if any. Any occurrence of the API key
    in the query or body is replaced by ``<redacted>`` before recording.
    """

    path: str
    query: dict[str, str]
    body: dict | None
    status: int
    api_key_ok: bool
    fault: str | None = None


class _Rec(NamedTuple):
    ts: int
    audit_id: str
    visible_at: int
    module: Any
    action: Any
    principal_type: Any
    raw: bytes


class _Snapshot(NamedTuple):
    """Immutable view of the store, replaced wholesale by add_events (copy on write)."""

    generation: int
    keys: list[tuple[int, str]]  # ascending (timestamp, auditId)
    ts: list[int]  # ascending timestamps, parallel to keys
    recs: list[_Rec]  # parallel to keys
    visible_ats: list[int]  # sorted distinct visible_at values (for the offset-view cache)


class _Filter(NamedTuple):
    start: int | None
    end: int | None
    modules: frozenset[str] | None
    actions: frozenset[str] | None
    exclude_login: bool
    exclude_system: bool


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Response(NamedTuple):
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


# Google's edge (Cloud Armor) rate-limit answer: HTML, no Retry-After.
_THROTTLED = _Response(
    429,
    b"<!DOCTYPE html>\n<html lang=en>\n<meta charset=utf-8>\n<title>Error 429 (Too Many Requests)"
    b"</title>\n<p><b>429.</b> <ins>That is an error.</ins>\n<p>Too many requests.\n",
    _HTML,
)


def _correlation_id() -> str:
    return str(uuid.uuid4())


def _error_envelope(
    status: int, code: str, message: str, *, with_messages: bool = True
) -> _Response:
    body = {
        "status": "ERROR",
        "code": code,
        "message": message,
        "correlationId": _correlation_id(),
        "detailedMessage": None,
        "responseMessages": (
            [
                {
                    "code": code,
                    "level": "ERROR",
                    "message": message,
                    "exception": None,
                    "failureTypes": [],
                }
            ]
            if with_messages
            else []
        ),
        "metadata": None,
    }
    return _Response(status, _ENCODER.encode(body).encode(), _JSON)


def _invalid_request(message: str) -> _Response:
    return _error_envelope(400, "INVALID_REQUEST", f"Invalid request: {message}")


def _html_page(status: int) -> _Response:
    phrase = http.HTTPStatus(status).phrase
    body = (
        f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return _Response(status, body.encode(), _HTML)


def _validate_fault(fault: str) -> str:
    if not isinstance(fault, str):
        raise TypeError(f"fault must be a str, got {type(fault).__name__}")
    if fault in _SIMPLE_FAULTS:
        return fault
    kind, sep, arg = fault.partition(":")
    if sep and kind == "429_retry_after":
        arg = arg.strip()
        if not arg or any(ord(c) < 32 or ord(c) == 127 for c in arg):
            raise ValueError(f"bad Retry-After value in fault {fault!r}")
        return f"{kind}:{arg}"
    if sep and kind == "latency":
        try:
            seconds = float(arg)
        except ValueError:
            raise ValueError(f"bad seconds in fault {fault!r}") from None
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError(f"bad seconds in fault {fault!r}")
        return fault
    raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULT_KINDS)}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _filter_hash(body: dict) -> str:
    """A short hash of the request body's filter fields (all of them, canonicalised)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _parse_int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    text = value.strip()
    if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
        raise _BadRequest(f"{name} must be an integer, got {value!r}")
    return int(text)


def _optional_millis(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRequest(f"{name} must be epoch milliseconds (an integer)")
    return value


def _optional_names(body: dict, name: str) -> frozenset[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _BadRequest(f"{name} must be a list of strings")
    # An empty list means "no filter", as for an absent field.
    return frozenset(value) if value else None


def _parse_filter(body: dict) -> _Filter:
    if body.get("filterType") != "Audit":
        raise _BadRequest("filterType must be Audit")
    start = _optional_millis(body, "startTime")
    end = _optional_millis(body, "endTime")
    if start is not None and end is not None and start > end:
        raise _BadRequest(f"Invalid time filter with start time {start} after end time {end}.")
    static = body.get("staticFilter")
    if static is not None and static not in STATIC_FILTERS:
        raise _BadRequest(f"staticFilter must be one of {', '.join(sorted(STATIC_FILTERS))}")
    return _Filter(
        start=start,
        end=end,
        modules=_optional_names(body, "modules"),
        actions=_optional_names(body, "actions"),
        exclude_login=static == "EXCLUDE_LOGIN_EVENTS",
        exclude_system=static == "EXCLUDE_SYSTEM_EVENTS",
    )


def _matches(rec: _Rec, flt: _Filter, now: int) -> bool:
    if rec.visible_at > now:
        return False
    if flt.modules is not None and rec.module not in flt.modules:
        return False
    if flt.actions is not None and rec.action not in flt.actions:
        return False
    if flt.exclude_login and rec.action in LOGIN_ACTIONS:
        return False
    return not (flt.exclude_system and rec.principal_type == "SYSTEM")


def _bounds(snap: _Snapshot, flt: _Filter) -> tuple[int, int]:
    """Index range [lo, hi) of events with startTime <= timestamp <= endTime."""
    lo = 0 if flt.start is None else bisect_left(snap.ts, flt.start)
    hi = len(snap.ts) if flt.end is None else bisect_right(snap.ts, flt.end)
    return lo, hi


def stop_server(server: _Server, thread: threading.Thread | None) -> None:
    """Stop a loopback server, close its connections and join its thread."""
    # shutdown() waits for serve_forever's next poll; a throwaway connection wakes it at
    # once instead (a test suite stops many servers).
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    while stopper.is_alive():
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", server.server_port), timeout=0.5).close()
        stopper.join(0.01)
    server.server_close()
    server.close_connections()
    if thread is not None:
        thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], sim: HarnessSimulator, handler: type | None = None
    ) -> None:
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler or _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can stall for
        # seconds on some hosts; the name is unused here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = port

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping connections is routine here (the faults do it on purpose).
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def track(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def close_connections(self) -> None:
        """Close idle keep-alive connections so a stopped simulator really is gone."""
        with self._connections_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Headers(dict):
    """Request headers by lower-cased name (the last one wins when repeated)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HarnessSimulator/1"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def parse_request(self) -> bool:
        """BaseHTTPRequestHandler.parse_request without the email-package header parser.

        The stock one costs more than building a 100-event page; this keeps what the
        simulator needs: method, path, version, headers (case-insensitive), keep-alive and
        ``Expect: 100-continue``.
        """
        self.arrived = time.perf_counter()  # the request line is in: the response clock starts
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(http.HTTPStatus.BAD_REQUEST, f"Bad request line {requestline!r}")
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        for _ in range(100):
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep or not name.strip():
                self.send_error(http.HTTPStatus.BAD_REQUEST, "Bad header line")
                return False
            headers[name.strip().lower()] = value.strip()
        else:
            self.send_error(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        if self.request_version == "HTTP/1.0":
            self.close_connection = connection != "keep-alive"
        else:
            self.close_connection = connection == "close"
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _dispatch(self) -> None:
        self.server.sim._serve(self)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _dispatch

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def head_bytes(self, status: int, content_type: str, length: int, extra=()) -> bytes:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            f"Content-Type: {content_type}",
            f"Content-Length: {length}",
        ]
        lines.extend(f"{name}: {value}" for name, value in extra)
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(self, resp: _Response) -> None:
        # One write for head and body: two small writes meet Nagle + delayed ACK (40 ms).
        head = self.head_bytes(resp.status, resp.content_type, len(resp.body), resp.headers)
        self.wfile.write(head + resp.body)

    def abort(self, *, reset: bool) -> None:
        """Drop the connection; with reset=True send a TCP RST (SO_LINGER 0) instead of FIN."""
        self.close_connection = True
        conn = self.connection
        try:
            if reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        # Drop the makefile() references too, or close() would not release the descriptor.
        for stream in (self.rfile, self.wfile):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(OSError):
            conn.close()
        # BaseHTTPRequestHandler still flushes wfile after the do_* method, then finish()
        # closes both: give it harmless stand-ins.
        self.rfile = io.BytesIO()
        self.wfile = io.BytesIO()


class HarnessSimulator:
    """An in-process Harness audit API. See the module docstring."""

    def __init__(
        self,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        api_key: str = DEFAULT_API_KEY,
        clock_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] | None = None,
        latency_s: float = 0.0,
        listv2_enabled: bool = True,
        order: str = "newest_first",
        ties: str = "stable",
        seed: int = 0,
        listv2_tokens: str = "keyset",
        count_lag_ms: int = 0,
        throttle: tuple[int, float] | None = None,
        on_request: Callable[[int], None] | None = None,
        page_cap: int | None = None,
        cursor_field: str = "pageToken",
        timestamps: str = "int",
        endless_cursor: bool = False,
        unique_ids: bool = True,
    ) -> None:
        if not account_id:
            raise ValueError("account_id must not be empty")
        if not api_key:
            raise ValueError("api_key must not be empty")
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if ties not in TIES:
            raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
        if listv2_tokens not in LISTV2_TOKENS:
            raise ValueError(f"listv2_tokens must be one of {LISTV2_TOKENS}, got {listv2_tokens!r}")
        if page_cap is not None and (isinstance(page_cap, bool) or int(page_cap) < 1):
            raise ValueError("page_cap must be an int >= 1 or None")
        if timestamps not in TIMESTAMPS:
            raise ValueError(f"timestamps must be one of {TIMESTAMPS}, got {timestamps!r}")
        if not cursor_field or not isinstance(cursor_field, str) or '"' in cursor_field:
            raise ValueError("cursor_field must be a plain JSON field name")
        if isinstance(count_lag_ms, bool) or not isinstance(count_lag_ms, int) or count_lag_ms < 0:
            raise ValueError("count_lag_ms must be an int >= 0")
        if throttle is not None:
            limit, window_s = throttle
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError("throttle's request count must be an int >= 1")
            if not 0 < window_s < float("inf"):
                raise ValueError("throttle's window must be a positive number of seconds")
            throttle = (limit, float(window_s))
        self.account_id = account_id
        self._api_key = api_key
        self._api_key_bytes = api_key.encode()
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._sleep = sleep or time.sleep
        self._real_time = sleep is None
        self.latency_s = latency_s
        self.listv2_enabled = listv2_enabled
        self.order = order
        self.ties = ties
        self.listv2_tokens = listv2_tokens
        self.count_lag_ms = count_lag_ms
        self.throttle = throttle
        self.page_cap = page_cap
        self.cursor_field = cursor_field
        self.timestamps = timestamps
        self.endless_cursor = endless_cursor
        self.unique_ids = unique_ids
        self._oldest_first = order == "oldest_first"
        self._shuffled = ties == "shuffled"
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

        self.requests: list[RecordedRequest] = []
        self._requests_lock = threading.Lock()
        self._faults: deque[str] = deque()
        self._faults_lock = threading.Lock()

        self.throttled = 0  # 429s sent by the throttle
        self._throttle_times: deque[int] = deque()  # accepted requests in the window
        self._throttle_lock = threading.Lock()

        self.listing_requests = 0  # requests so far to the two listing paths
        self._on_request = on_request
        self._pending: list[tuple[int, list[_Rec], set[str], int]] = []
        self._listing_lock = threading.RLock()  # on_request may call add_events

        self._store_lock = threading.Lock()
        self._ids: set[str] = set()
        self._snap = _Snapshot(0, [], [], [], [])
        self._view_cache: OrderedDict[tuple, list[int]] = OrderedDict()
        self._view_cache_lock = threading.Lock()
        self._issued_tokens: set[str] = set()
        self._tokens_lock = threading.Lock()

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- events ------------------------------------------------------------------------------

    def add_events(
        self,
        events: Iterable[dict],
        visible_at_ms: int | None = None,
        *,
        visible_after_requests: int | None = None,
    ) -> None:
        """Store events; each is served once ``clock_ms() >= visible_at_ms`` (None: at once).

        With ``visible_after_requests=K`` the events are also hidden from the first K requests
        to the listing paths (counted from the simulator's start, whatever their answer) and
        appear to request K+1 onwards, as if added when it arrived (for ``count_lag_ms``,
        visible from then). K <= ``listing_requests`` already passed: visible at once.

        Every event needs a string ``auditId`` (unique across the simulator) and an integer
        ``timestamp``. The JSON is encoded now, so later changes to the dicts are not seen.
        Thread-safe; may be called while the server runs (or from ``on_request``).
        """
        if visible_at_ms is not None and (
            isinstance(visible_at_ms, bool) or not isinstance(visible_at_ms, int)
        ):
            raise ValueError("visible_at_ms must be an int (epoch ms) or None")
        if visible_after_requests is not None and (
            isinstance(visible_after_requests, bool)
            or not isinstance(visible_after_requests, int)
            or visible_after_requests < 0
        ):
            raise ValueError("visible_after_requests must be an int >= 0 or None")
        visible_at = _NEVER_HIDDEN if visible_at_ms is None else visible_at_ms
        gc_was_enabled = gc.isenabled()
        gc.disable()  # many small tuples: the cyclic GC would rescan them over and over
        try:
            new, batch_ids = self._encode(events, visible_at)
            if not new:
                return
            if visible_after_requests is not None:
                with self._listing_lock:
                    if visible_after_requests > self.listing_requests:
                        with self._store_lock:
                            self._reserve(batch_ids)
                        self._pending.append((visible_after_requests, new, batch_ids, visible_at))
                        return
            with self._store_lock:
                self._reserve(batch_ids)
                self._insert(new, visible_at)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _encode(self, events: Iterable[dict], visible_at: int) -> tuple[list[_Rec], set[str]]:
        encode = _event_encoder()
        shapes = {"int": (int,), "string": (str,), "float": (float,), "mixed": (int, str, float)}
        shape = shapes[self.timestamps]
        new: list[_Rec] = []
        batch_ids: set[str] = set()
        for event in events:
            audit_id = event.get("auditId")
            ts = event.get("timestamp")
            if not isinstance(audit_id, str) or not audit_id:
                raise ValueError(f"event without a string auditId: {event!r:.200}")
            if isinstance(ts, bool) or not isinstance(ts, int):
                raise ValueError(f"event {audit_id} without an integer timestamp")
            if audit_id in batch_ids and self.unique_ids:
                raise ValueError(f"duplicate auditId {audit_id} in the batch")
            batch_ids.add(audit_id)
            principal = (event.get("authenticationInfo") or {}).get("principal") or {}
            new.append(
                _Rec(
                    ts,
                    audit_id,
                    visible_at,
                    event.get("module"),
                    event.get("action"),
                    principal.get("type"),
                    encode(dict(event, timestamp=shape[len(new) % len(shape)](ts))),
                )
            )
        new.sort()
        return new, batch_ids

    def _reserve(self, batch_ids: set[str]) -> None:
        """Claim the batch's auditIds (store lock held)."""
        clash = batch_ids & self._ids
        if clash and self.unique_ids:
            raise ValueError(f"auditId already stored: {sorted(clash)[:5]}")
        self._ids |= batch_ids

    def _insert(self, new: list[_Rec], visible_at: int) -> None:
        """Publish sorted records in a new snapshot (store lock held, ids reserved)."""
        old = self._snap
        if old.recs and (new[0].ts, new[0].audit_id) > old.keys[-1]:
            recs = old.recs + new  # the common case: newer events appended
        else:
            recs = sorted(old.recs + new)
        visible_ats = old.visible_ats
        if visible_at != _NEVER_HIDDEN and visible_at not in visible_ats:
            visible_ats = sorted([*visible_ats, visible_at])
        self._snap = _Snapshot(
            generation=old.generation + 1,
            keys=[(r.ts, r.audit_id) for r in recs],
            ts=[r.ts for r in recs],
            recs=recs,
            visible_ats=visible_ats,
        )

    def _count_listing_request(self) -> None:
        """Count a request to a listing path; release held-back events; call on_request."""
        with self._listing_lock:
            self.listing_requests += 1
            n = self.listing_requests
            if self._pending:
                due = [p for p in self._pending if p[0] < n]
                if due:
                    self._pending = [p for p in self._pending if p[0] >= n]
                    now = self._clock_ms()
                    for _, new, _, visible_at in due:
                        at = max(visible_at, now)
                        recs = [r._replace(visible_at=at) for r in new]
                        with self._store_lock:
                            self._insert(recs, at)
            if self._on_request is not None:
                self._on_request(n)

    def _throttled(self) -> bool:
        """True when this request is over the throttle's limit (it is then not counted)."""
        if self.throttle is None:
            return False
        limit, window_s = self.throttle
        now = self._clock_ms()
        with self._throttle_lock:
            times = self._throttle_times
            horizon = now - window_s * 1000.0
            while times and times[0] <= horizon:
                times.popleft()
            if len(times) >= limit:
                self.throttled += 1
                return True
            times.append(now)
            return False

    def event_count(self) -> int:
        """How many events are stored (visible or not, held back for later requests too)."""
        with self._listing_lock:
            held = sum(len(p[1]) for p in self._pending)
        return len(self._snap.recs) + held

    # -- faults ------------------------------------------------------------------------------

    def inject(self, *faults: str) -> None:
        """Queue faults, consumed one per incoming request (any path) before normal handling.

        ``"429"``, ``"429_retry_after:N"``, ``"502_html"``, ``"503_html"``, ``"500_json"``,
        ``"truncated_200"``, ``"cut"``, ``"reset"``, ``"latency:S"``, ``"401"``, ``"403"``,
        ``"400"``. Raises ValueError for anything else (nothing is queued then).
        """
        checked = [_validate_fault(f) for f in faults]
        with self._faults_lock:
            self._faults.extend(checked)

    def pending_faults(self) -> int:
        with self._faults_lock:
            return len(self._faults)

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def _next_fault(self) -> str | None:
        with self._faults_lock:
            return self._faults.popleft() if self._faults else None

    # -- recorded requests -------------------------------------------------------------------

    def listv2_requests(self) -> list[RecordedRequest]:
        with self._requests_lock:
            return [r for r in self.requests if r.path == LISTV2_PATH]

    def clear_requests(self) -> None:
        with self._requests_lock:
            self.requests.clear()

    def _record(self, req: RecordedRequest) -> None:
        with self._requests_lock:
            self.requests.append(req)

    # -- server lifecycle --------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 (``port`` 0: a free one) in a daemon thread; return the URL."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server(("127.0.0.1", port), self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name=f"harness-simulator:{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self.url

    def stop(self) -> None:
        """Stop serving and close open connections. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        stop_server(server, thread)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.server_port

    def __enter__(self) -> HarnessSimulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling --------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "<redacted>") if self._api_key in text else text

    def _serve(self, handler: _Handler) -> None:
        arrived = handler.arrived
        try:
            raw_body = handler.read_body()
        except (ValueError, OSError):
            handler.close_connection = True
            handler.send(_invalid_request("could not read the request body"))
            return
        path, _, query_string = handler.path.partition("?")
        query = {k: v[0] for k, v in parse_qs(query_string, keep_blank_values=True).items() if v}
        api_key = handler.headers.get("x-api-key")
        key_ok = api_key is not None and hmac.compare_digest(
            api_key.encode("utf-8", "surrogateescape"), self._api_key_bytes
        )
        body_obj = None
        if raw_body:
            try:
                body_obj = json.loads(raw_body)
            except (ValueError, UnicodeDecodeError):
                body_obj = None

        if path in (LISTV2_PATH, LIST_PATH):
            self._count_listing_request()
        throttled = self._throttled()
        fault = "throttle" if throttled else self._next_fault()

        # Record before anything is written, so a client that has its answer always finds
        # the request in self.requests.
        if self._api_key_bytes in raw_body:
            try:
                body_obj = json.loads(self._redact(raw_body.decode("utf-8")))
            except (ValueError, UnicodeDecodeError):
                body_obj = None
        recorded_query = {k: self._redact(v) for k, v in query.items()}
        recorded_body = body_obj if isinstance(body_obj, dict) else None

        def record(status: int) -> None:
            self._record(
                RecordedRequest(
                    path=path,
                    query=recorded_query,
                    body=recorded_body,
                    status=status,
                    api_key_ok=key_ok,
                    fault=fault,
                )
            )

        self._answer(handler, fault, path, query, body_obj, key_ok, record, arrived)

    def _answer(
        self,
        handler: _Handler,
        fault: str | None,
        path: str,
        query: dict[str, str],
        body: Any,
        key_ok: bool,
        record: Callable[[int], None],
        arrived: float,
    ) -> None:
        """Send the response (or misbehave as the fault says), recording it just before."""
        if fault == "throttle":  # the edge answers at once
            record(429)
            handler.send(_THROTTLED)
        elif fault is None or fault.startswith("latency:"):
            if fault is not None:
                self._sleep(float(fault.partition(":")[2]))
            resp = self._respond(handler.command, path, query, body, key_ok)
            self._wait_latency(arrived)
            record(resp.status)
            handler.send(resp)
        elif fault == "reset":
            self._wait_latency(arrived)
            record(0)
            handler.abort(reset=True)
        elif fault == "truncated_200":
            full = self._respond(handler.command, path, query, body, key_ok).body
            self._wait_latency(arrived)
            record(200)
            handler.send(_Response(200, full[: len(full) // 2], _JSON))
        elif fault == "cut":
            resp = self._respond(handler.command, path, query, body, key_ok)
            head = handler.head_bytes(resp.status, resp.content_type, len(resp.body))
            self._wait_latency(arrived)
            record(resp.status)
            with contextlib.suppress(OSError):
                handler.wfile.write(head + resp.body[: len(resp.body) // 2])
            handler.abort(reset=False)
        else:
            resp = self._fault_response(fault)
            self._wait_latency(arrived)
            record(resp.status)
            handler.send(resp)

    def _wait_latency(self, arrived: float) -> None:
        """Answer ``latency_s`` after the request arrived.

        On the real clock the latency is the API's response time: the time spent reading the
        request and building the answer is part of it, not added to it. An injected (test)
        clock sleeps the full latency, so that runs are repeatable.
        """
        if self.latency_s <= 0:
            return
        spent = time.perf_counter() - arrived if self._real_time else 0.0
        if self.latency_s > spent:
            self._sleep(self.latency_s - spent)

    def _fault_response(self, fault: str) -> _Response:
        if fault == "429":
            return _Response(429, b"Too Many Requests\n", _TEXT)
        if fault.startswith("429_retry_after:"):
            value = fault.partition(":")[2]
            return _Response(429, b"Too Many Requests\n", _TEXT, (("Retry-After", value),))
        if fault == "502_html":
            return _html_page(502)
        if fault == "503_html":
            return _html_page(503)
        if fault == "500_json":
            return _error_envelope(
                500,
                "UNKNOWN_ERROR",
                "Simulated failure: java.lang.IllegalStateException: simulator fault",
                with_messages=False,
            )
        if fault == "401":
            return _error_envelope(401, "INVALID_TOKEN", "Token is not valid.")
        if fault == "403":
            return self._access_denied(self.account_id)
        if fault == "400":
            return _invalid_request("simulated fault")
        raise AssertionError(f"unhandled fault {fault!r}")  # inject() validates

    @staticmethod
    def _access_denied(account: str) -> _Response:
        return _error_envelope(
            403,
            "ACCESS_DENIED",
            "User not authorized: You need core_audit_view permission on ACCOUNT with "
            f"identifier: {account} to perform this action",
        )

    def _respond(
        self, method: str, path: str, query: dict[str, str], body: Any, key_ok: bool
    ) -> _Response:
        if path not in (LISTV2_PATH, LIST_PATH) or (
            path == LISTV2_PATH and not self.listv2_enabled
        ):
            return _html_page(404)
        if method != "POST":
            return _Response(405, b"Method Not Allowed\n", _TEXT, (("Allow", "POST"),))
        if not key_ok:
            return _error_envelope(401, "INVALID_TOKEN", "Token is not valid.")
        account = query.get("accountIdentifier")
        if not account:
            return _invalid_request("Account detail is not present in the request")
        if account != self.account_id:
            return self._access_denied(account)
        try:
            page_size = _parse_int(query.get("pageSize"), "pageSize", DEFAULT_PAGE_SIZE)
            if not 1 <= page_size <= MAX_PAGE_SIZE:
                raise _BadRequest(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
            page_index = _parse_int(query.get("pageIndex"), "pageIndex", 0)
            if page_index < 0:
                raise _BadRequest("pageIndex must not be negative")
            if not isinstance(body, dict):
                raise _BadRequest("the request body must be a JSON AuditFilterProperties object")
            flt = _parse_filter(body)
            now = self._clock_ms()
            if path == LISTV2_PATH:
                return self._list_v2(query.get("pageToken"), page_size, page_index, body, flt, now)
            return self._list(page_size, page_index, flt, now)
        except _BadRequest as exc:
            return _invalid_request(exc.message)

    def _list_v2(
        self,
        token: str | None,
        page_size: int,
        page_index: int,
        body: dict,
        flt: _Filter,
        now: int,
    ) -> _Response:
        snap = self._snap
        fhash = _filter_hash(body)
        offset_tokens = self.listv2_tokens == "offset"
        decoded: Any = None
        if self.endless_cursor and token == _ENDLESS:
            token = None  # the first page again, saying there is more
        if token:  # an empty pageToken= is treated as absent
            with self._tokens_lock:
                known = token in self._issued_tokens
            try:
                decoded = json.loads(_b64url_decode(token)) if known else None
            except (ValueError, binascii.Error):
                decoded = None
            fields = (("o", int),) if offset_tokens else (("ts", int), ("id", str))
            if not isinstance(decoded, dict) or not isinstance(decoded.get("f"), str):
                raise _BadRequest("pageToken is not valid")
            for name, kind in fields:
                value = decoded.get(name)
                if isinstance(value, bool) or not isinstance(value, kind):
                    raise _BadRequest("pageToken is not valid")
            if decoded["f"] != fhash:
                raise _BadRequest("pageToken does not match the request filter")

        served = min(page_size, self.page_cap or page_size)
        if offset_tokens:
            view = self._offset_view(snap, flt, now)
            start = decoded["o"] if decoded else 0
            page = [snap.recs[i] for i in self._page_slice(snap, view, start, served)]
            has_next = start + served < len(view)
            next_key = {"o": start + served} if has_next else None
        else:
            page, has_next = self._keyset_page(snap, flt, now, decoded, served)
            next_key = {"ts": page[-1].ts, "id": page[-1].audit_id} if has_next else None
            if self._shuffled:
                page = self._shuffle_runs(page)

        next_token = None
        if next_key is not None:
            next_key["f"] = fhash
            next_token = _b64url(_ENCODER.encode(next_key).encode())
            with self._tokens_lock:
                self._issued_tokens.add(next_token)
            if self.endless_cursor:
                next_token = _ENDLESS
        out = b"".join(
            (
                b'{"status":"SUCCESS","data":{"content":[',
                b",".join([r.raw for r in page]),
                b'],"pageSize":%d,"hasNext":%s,"%s":%s,"pageIndex":%d,"pageItemCount":%d}'
                % (
                    page_size,
                    b"true" if has_next else b"false",
                    self.cursor_field.encode(),
                    b'"%s"' % next_token.encode() if next_token else b"null",
                    page_index,
                    len(page),
                ),
                b',"metaData":null,"correlationId":"%s"}' % _correlation_id().encode(),
            )
        )
        return _Response(200, out, _JSON)

    def _keyset_page(
        self, snap: _Snapshot, flt: _Filter, now: int, decoded: dict | None, page_size: int
    ) -> tuple[list[_Rec], bool]:
        """The page after the token's (timestamp, auditId) in the simulator's order."""
        lo, hi = _bounds(snap, flt)
        if self._oldest_first:
            if decoded is not None:
                lo = max(lo, bisect_right(snap.keys, (decoded["ts"], decoded["id"])))
            indexes: Iterable[int] = range(lo, hi)
        else:
            if decoded is not None:
                hi = min(hi, bisect_left(snap.keys, (decoded["ts"], decoded["id"])))
            indexes = range(hi - 1, lo - 1, -1)
        recs = snap.recs
        page: list[_Rec] = []
        want = page_size + 1  # one more than a page tells whether there is a next one
        only_time = flt.modules is None and flt.actions is None
        only_time = only_time and not (flt.exclude_login or flt.exclude_system)
        for i in indexes:
            rec = recs[i]
            if (rec.visible_at <= now) if only_time else _matches(rec, flt, now):
                page.append(rec)
                if len(page) == want:
                    break
        has_next = len(page) == want
        if has_next:
            page.pop()
        return page, has_next

    def _shuffle_runs(self, page: list[_Rec]) -> list[_Rec]:
        """The page with each run of equal timestamps in a fresh random order."""
        out: list[_Rec] = []
        i, n = 0, len(page)
        with self._rng_lock:
            while i < n:
                j = i + 1
                while j < n and page[j].ts == page[i].ts:
                    j += 1
                run = page[i:j]
                if len(run) > 1:
                    self._rng.shuffle(run)
                out.extend(run)
                i = j
        return out

    def _page_slice(self, snap: _Snapshot, view: list[int], start: int, size: int) -> list[int]:
        """``view[start:start + size]``; with shuffled ties, as cut from a fresh shuffle.

        Each run of equal timestamps the page touches is shuffled whole and the page takes
        its positions from it, so a run straddling a page boundary is split differently on
        every request: O(page + the runs at its edges).
        """
        chosen = view[start : start + size]
        if not self._shuffled or not chosen:
            return chosen
        recs = snap.recs
        n = len(view)
        end = start + len(chosen)
        out: list[int] = []
        i = start
        with self._rng_lock:
            while i < end:
                t = recs[view[i]].ts
                g0 = i
                if i == start:
                    while g0 > 0 and recs[view[g0 - 1]].ts == t:
                        g0 -= 1
                g1 = i + 1
                while g1 < n and recs[view[g1]].ts == t:
                    g1 += 1
                run = view[g0:g1]
                if len(run) > 1:
                    self._rng.shuffle(run)
                stop = min(g1, end)
                out.extend(run[i - g0 : stop - g0])
                i = stop
        return out

    def _offset_view(self, snap: _Snapshot, flt: _Filter, now: int) -> list[int]:
        """Indexes of matching visible events in page order; cached while nothing changes."""
        epoch = bisect_right(snap.visible_ats, now)  # which events are visible at `now`
        key = (snap.generation, flt, epoch)
        with self._view_cache_lock:
            view = self._view_cache.get(key)
            if view is not None:
                self._view_cache.move_to_end(key)
                return view
        lo, hi = _bounds(snap, flt)
        recs = snap.recs
        indexes = range(lo, hi) if self._oldest_first else range(hi - 1, lo - 1, -1)
        view = [i for i in indexes if _matches(recs[i], flt, now)]
        with self._view_cache_lock:
            self._view_cache[key] = view
            while len(self._view_cache) > 16:
                self._view_cache.popitem(last=False)
        return view

    def _list(self, page_size: int, page_index: int, flt: _Filter, now: int) -> _Response:
        snap = self._snap
        view = self._offset_view(snap, flt, now)
        # The totals come from a count of their own, on a secondary that may lag.
        total = len(
            view if not self.count_lag_ms else self._offset_view(snap, flt, now - self.count_lag_ms)
        )
        served = min(page_size, self.page_cap or page_size)
        chosen = self._page_slice(snap, view, page_index * page_size, served)
        recs = snap.recs
        out = b"".join(
            (
                b'{"status":"SUCCESS","data":{"totalPages":%d,"totalItems":%d,'
                b'"pageItemCount":%d,"pageSize":%d,"content":['
                % (-(-total // page_size), total, len(chosen), page_size),
                b",".join([recs[i].raw for i in chosen]),
                b'],"pageIndex":%d,"empty":%s,"pageToken":null},"metaData":null,'
                b'"correlationId":"%s"}'
                % (page_index, b"false" if chosen else b"true", _correlation_id().encode()),
            )
        )
        return _Response(200, out, _JSON)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.harness_simulator",
        description="Serve a simulated Harness audit API with generated events.",
    )
    parser.add_argument("--events", type=int, default=1000, help="events in the last hour")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per request")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: free)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--no-listv2", action="store_true", help="answer 404 on listV2")
    parser.add_argument("--order", choices=ORDERS, default="newest_first")
    parser.add_argument(
        "--ties", choices=TIES, default="stable", help="order of events sharing a timestamp"
    )
    parser.add_argument("--listv2-tokens", choices=LISTV2_TOKENS, default="keyset")
    parser.add_argument(
        "--count-lag-ms", type=int, default=0, help="list totals count events visible this long ago"
    )
    parser.add_argument(
        "--throttle",
        metavar="N/S",
        default=None,
        help="answer 429 (no Retry-After) beyond N requests in any S seconds, e.g. 100/10",
    )
    parser.add_argument("--page-cap", type=int, default=None, help="at most N events a page")
    parser.add_argument("--cursor-field", default="pageToken", help="listV2's token field")
    parser.add_argument("--timestamps", choices=TIMESTAMPS, default="int")
    parser.add_argument("--endless-cursor", action="store_true", help="one token, for ever")
    parser.add_argument("--duplicate-ids", action="store_true", help="allow an id twice")
    args = parser.parse_args(argv)
    if args.events < 0 or args.latency_ms < 0 or args.count_lag_ms < 0:
        parser.error("--events, --latency-ms and --count-lag-ms must be >= 0")
    throttle = None
    if args.throttle is not None:
        limit, sep, window = args.throttle.partition("/")
        try:
            throttle = (int(limit), float(window))
            if not sep or throttle[0] < 1 or not 0 < throttle[1] < float("inf"):
                raise ValueError
        except ValueError:
            parser.error("--throttle takes N/S: N >= 1 requests per S > 0 seconds")

    sim = HarnessSimulator(
        account_id=args.account_id,
        api_key=args.api_key,
        latency_s=args.latency_ms / 1000.0,
        listv2_enabled=not args.no_listv2,
        order=args.order,
        ties=args.ties,
        seed=args.seed,
        listv2_tokens=args.listv2_tokens,
        count_lag_ms=args.count_lag_ms,
        throttle=throttle,
        page_cap=args.page_cap,
        cursor_field=args.cursor_field,
        timestamps=args.timestamps,
        endless_cursor=args.endless_cursor,
        unique_ids=not args.duplicate_ids,
    )
    now = time.time_ns() // 1_000_000
    sim.add_events(
        generate_events(args.events, now - 3_600_000, now, args.seed, account_id=args.account_id)
    )
    stopping = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    url = sim.start(args.port)
    # One line, JSON, so scripts can read it. The key is the simulator's fake key.
    print(
        json.dumps(
            {
                "url": url,
                "account_id": sim.account_id,
                "api_key": args.api_key,
                "events": args.events,
            }
        ),
        flush=True,
    )
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
