"""The Harness audit API: one page per call, retried, bounded, and errors mapped to what to do.

The client only sends and retries; which range to ask for is ``paging``'s business.

One retry policy covers everything that can go wrong with a request: 429 and 5xx, refused
or cut connections, timeouts, and 2xx bodies that are not the expected page. It is a short
loop rather than urllib3's ``Retry`` because three things must happen around every attempt,
retries included, that ``Retry`` has no place for: waiting for the pacer's slot, bounding the
attempt by what is left of the run's deadline, and treating a malformed 200 as a failure.
Backoff is full jitter, capped; a Retry-After, if Harness ever sends one, is honoured up to
a minute.

Every response is read in chunks against a size cap, without decoding a content encoding
that was never asked for, over a connection that a watchdog cuts when the deadline passes
(see ``Connection``): a hostile or broken answer costs a retry, never the instance's memory
or the run's time.
"""

import contextlib
import json
import logging
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable
from http.client import HTTPException
from urllib.parse import urlencode, urlsplit

from urllib3 import HTTPHeaderDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ReadTimeoutError

from harness_audit.clock import Clock, Deadline
from harness_audit.config import Config
from harness_audit.errors import DeadlineReached, HarnessRejected, HarnessUnavailable
from harness_audit.listing import (
    LIST,
    LIST_V2,
    AuditQuery,
    MalformedPage,
    Page,
    PageCursor,
    error_fields,
    error_summary,
    parse_page,
)
from harness_audit.logs import log
from harness_audit.pacing import Pacer

PATHS = {LIST_V2: "/audit/api/audits/listV2", LIST: "/audit/api/audits/list"}
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
RETRY_AFTER_MAX_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0
# A 100-event page is under 1 MB; an error body is a few hundred bytes.
MAX_PAGE_BYTES = 32 * 1024 * 1024
MAX_ERROR_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024


class EndpointChoice:
    """listV2 first, as the guide names it; the list endpoint every Harness SDK calls when
    listV2 answers 404/405. Decided once per instance, and logged once."""

    def __init__(self):
        self._endpoint = LIST_V2
        self._confirmed = False
        self._lock = threading.Lock()

    @property
    def current(self) -> str:
        return self._endpoint

    def confirm(self, endpoint: str) -> None:
        with self._lock:
            if self._confirmed or endpoint != self._endpoint:
                return
            self._confirmed = True
        log(logging.INFO, "paging Harness's audit listing", endpoint=endpoint, path=PATHS[endpoint])

    def fall_back(self) -> bool:
        """Switch to the list endpoint if listV2 was never seen to work."""
        with self._lock:
            if self._confirmed or self._endpoint != LIST_V2:
                return False
            self._endpoint = LIST
        log(logging.WARNING, "listV2 is missing at HARNESS_API_BASE; using the list endpoint")
        return True


class _Failed(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, cause: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.cause = cause
        self.detail = detail
        self.retry_after = retry_after


class _EndpointMissing(Exception):
    def __init__(self, rejection: HarnessRejected):
        self.rejection = rejection


class HarnessClient:
    """The requests of one run, over its own connection. Pacer and endpoint choice belong to
    the instance."""

    def __init__(
        self,
        *,
        api_base: str,
        account_id: str,
        api_key: str,
        page_size: int,
        max_retries: int,
        clock: Clock,
        pacer: Pacer,
        endpoint: EndpointChoice,
        jitter: Callable[[], float] = random.random,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ):
        self._account_id = account_id
        self._headers = {
            "x-api-key": api_key,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "identity",
        }
        self._page_size = page_size
        self._max_retries = max_retries
        self._clock = clock
        self._connection = Connection(api_base)
        self._base_path = urlsplit(api_base).path.rstrip("/")
        self._pacer = pacer
        self._endpoint = endpoint
        self._jitter = jitter
        self._max_page_bytes = max_page_bytes
        self.requests = 0  # HTTP requests sent, retries included
        self.retries: Counter = Counter()
        self.last_failure: str | None = None

    @classmethod
    def from_config(
        cls, config: Config, *, clock: Clock, pacer: Pacer, endpoint: EndpointChoice
    ) -> "HarnessClient":
        """The client a run (or verify) uses, from the function's configuration."""
        return cls(
            api_base=config.api_base,
            account_id=config.account_id,
            api_key=config.api_key,
            page_size=config.page_size,
            max_retries=config.max_retries,
            clock=clock,
            pacer=pacer,
            endpoint=endpoint,
        )

    def close(self) -> None:
        """Close the run's connection to Harness."""
        self._connection.close()

    def fetch(self, query: AuditQuery, cursor: PageCursor, deadline: Deadline) -> Page:
        """One page. Raises HarnessRejected (fix something), HarnessUnavailable (retries
        spent), or DeadlineReached (no time left for the request or its backoff)."""
        failures = 0
        while True:
            endpoint = self._endpoint.current
            self._pacer.wait(deadline)
            try:
                page = self._attempt(endpoint, query, cursor, deadline)
            except _EndpointMissing as missing:
                if self._endpoint.fall_back():
                    continue
                raise missing.rejection from None
            except _Failed as failure:
                failures += 1
                self.retries[failure.cause] += 1
                self.last_failure = f"{failure.cause}: {failure.detail}"
                if failures > self._max_retries:
                    raise HarnessUnavailable(
                        f"Harness did not answer usably through {self._max_retries} retries "
                        f"({failure.detail}). The next run resumes from the checkpoint; if "
                        "this persists, check HARNESS_API_BASE and Harness's status page"
                    ) from None
                self._back_off(failure, failures, deadline)
                continue
            self._endpoint.confirm(endpoint)
            return page

    def _back_off(self, failure: _Failed, failures: int, deadline: Deadline) -> None:
        if failure.retry_after is not None:
            delay = min(failure.retry_after, RETRY_AFTER_MAX_SECONDS)
        else:
            ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (failures - 1))
            delay = self._jitter() * ceiling
        if delay >= deadline.remaining():
            raise DeadlineReached(f"a {delay:.1f} s backoff after {failure.cause} would pass it")
        log(
            logging.WARNING,
            "retrying a Harness request",
            cause=failure.cause,
            detail=failure.detail,
            retry=failures,
            backoff_seconds=round(delay, 3),
        )
        self._clock.sleep(delay)

    def _attempt(
        self, endpoint: str, query: AuditQuery, cursor: PageCursor, deadline: Deadline
    ) -> Page:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise DeadlineReached("no time left for another request")
        self.requests += 1
        # Whatever Harness does, the attempt ends by the deadline: the watchdog cuts the
        # connection then, and the read waiting on it returns at once.
        watchdog = threading.Timer(remaining, self._connection.cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            status, headers, data = self._exchange(endpoint, query, cursor, deadline, remaining)
        finally:
            watchdog.cancel()
            watchdog.join()
        if 200 <= status < 300:
            encoding = headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise _Failed(
                    "malformed_body",
                    f"the page came with Content-Encoding {encoding[:40]!r}, never asked for",
                )
            try:
                return parse_page(data, endpoint=endpoint, cursor=cursor, page_size=self._page_size)
            except MalformedPage as exc:
                raise _Failed("malformed_body", f"HTTP {status} with a bad body: {exc}") from None
        if status in RETRYABLE_STATUSES:
            cause = "http_429" if status == 429 else "http_5xx"
            raise _Failed(
                cause,
                f"HTTP {status} ({error_summary(_decoded(data))})",
                _retry_after(headers.get("Retry-After")),
            )
        rejection = self._rejection(status, data)
        if status in (404, 405) and endpoint == LIST_V2:
            raise _EndpointMissing(rejection)
        raise rejection

    def _exchange(
        self,
        endpoint: str,
        query: AuditQuery,
        cursor: PageCursor,
        deadline: Deadline,
        remaining: float,
    ) -> tuple[int, HTTPHeaderDict, bytes]:
        """Send the request; read the answer's status, headers and (bounded) body."""
        connection = None
        try:
            connection = self._connection.open(
                connect_timeout=min(CONNECT_TIMEOUT_SECONDS, remaining),
                read_timeout=min(READ_TIMEOUT_SECONDS, remaining),
            )
            connection.request(
                "POST",
                self._target(endpoint, cursor),
                body=query.body,
                headers=self._headers,
                preload_content=False,
                decode_content=False,
            )
            response = connection.getresponse()
            status = response.status
            limit = self._max_page_bytes if 200 <= status < 300 else MAX_ERROR_BYTES
            data = self._read(response, limit, deadline)
        except (_Failed, DeadlineReached):
            self._connection.discard(connection)
            raise
        except (HTTPException, HTTPError, OSError) as exc:
            self._connection.discard(connection)
            if deadline.remaining() <= 0:
                raise DeadlineReached("the deadline passed while Harness was answering") from None
            if isinstance(exc, TimeoutError | ReadTimeoutError | ConnectTimeoutError):
                raise _Failed(
                    "timeout", f"Harness did not answer in time ({type(exc).__name__})"
                ) from None
            raise _Failed("connection", f"{type(exc).__name__}: {_reason(exc)}") from None
        if response.headers.get("Connection", "").lower() == "close":
            self._connection.discard(connection)
        return status, response.headers, data

    @staticmethod
    def _read(response, limit: int, deadline: Deadline) -> bytes:
        """The body as it arrives, up to ``limit`` bytes: a page over it is a failed request,
        and the rest of it is never read. An answer still arriving at the deadline is
        dropped (the watchdog cuts a read that waits; this catches one that trickles in)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            if deadline.remaining() <= 0:
                raise DeadlineReached("the deadline passed while Harness's answer arrived")
            chunk = response.read1(_CHUNK_BYTES)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise _Failed("body_too_large", f"the answer is larger than {limit} bytes")
            chunks.append(chunk)

    def _target(self, endpoint: str, cursor: PageCursor) -> str:
        size = cursor.size or self._page_size
        params: dict = {"accountIdentifier": self._account_id, "pageSize": size}
        if endpoint == LIST_V2:
            if cursor.token is not None:
                params["pageToken"] = cursor.token
        else:
            params["pageIndex"] = cursor.index
        return f"{self._base_path}{PATHS[endpoint]}?{urlencode(params)}"

    def _rejection(self, status: int, data: bytes) -> HarnessRejected:
        code, message, correlation_id = error_fields(_decoded(data))
        return HarnessRejected(
            status, code, message, correlation_id, _hint(status, self._account_id)
        )


class Connection:
    """The one kept-alive connection of a run to Harness, which its deadline can cut.

    A socket timeout bounds each read, not an answer: a server sending its status line a
    byte at a time would hold a request for ever, every byte arriving within the timeout.
    urllib3's pool gives no handle on the connection a request is using, so the client keeps
    its own (an urllib3 connection, verifying TLS as the pool does) and a timer shuts its
    socket down when the deadline passes, whatever read is waiting.
    """

    def __init__(self, api_base: str):
        parts = urlsplit(api_base)
        self._connection_class = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        self._host = parts.hostname
        self._port = parts.port
        self._current: HTTPConnection | None = None
        self._lock = threading.Lock()

    def open(self, *, connect_timeout: float, read_timeout: float) -> HTTPConnection:
        """The kept-alive connection, or a new one if there is none or Harness dropped it."""
        with self._lock:
            connection = self._current
            if connection is not None and not connection.is_connected:
                connection.close()
                connection = None
            if connection is None:
                connection = self._connection_class(self._host, self._port)
                self._current = connection
        if connection.sock is None:
            connection.timeout = connect_timeout
            connection.connect()
        connection.timeout = read_timeout  # urllib3 applies it to the socket per request
        return connection

    def cut(self) -> None:
        """The deadline passed (called from the watchdog's thread): unblock any read."""
        with self._lock:
            connection, self._current = self._current, None
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def discard(self, connection: HTTPConnection | None) -> None:
        """After a failure, or when Harness closes it: never reuse it."""
        with self._lock:
            if self._current is connection:
                self._current = None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        self.discard(self._current)


def _decoded(data: bytes) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; HTTP dates and junk are ignored (backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)[:300]


def _hint(status: int, account_id: str) -> str:
    if status == 401:
        return (
            "Check HARNESS_API_KEY: the token is invalid, expired or revoked. Create a new "
            "token in Harness (My API Keys) and store it as a new version of the secret"
        )
    if status == 403:
        return (
            "The token's principal lacks the core_audit_view permission on account "
            f"{account_id}: grant a role with 'Audit View' (e.g. Account Viewer) to the "
            "user or service account that owns the token, or check HARNESS_ACCOUNT_ID"
        )
    if status == 400:
        return (
            "Check HARNESS_ACCOUNT_ID, PAGE_SIZE, FILTER_MODULES, FILTER_ACTIONS and STATIC_FILTER"
        )
    if status in (404, 405):
        return (
            "Neither listV2 nor list exists at HARNESS_API_BASE: check the host, and "
            "whether your installation serves the API under /gateway"
        )
    if 300 <= status < 400:
        return "HARNESS_API_BASE redirects: set it to the final https URL"
    return "Check HARNESS_API_BASE and the Harness status page"
