"""The Harness audit API: one page per call, retried, bounded, errors mapped to what to do.
A loop, not urllib3's ``Retry``: the pacer's slot, the run's deadline and the body's check
surround every attempt. A socket timeout bounds each read, not a status line trickling in a
byte at a time, so a timer shuts the socket at the deadline. Bodies are capped, never inflated."""

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

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from harness_audit import listing
from harness_audit.clock import Clock, Deadline
from harness_audit.config import Config
from harness_audit.errors import DeadlineReached, HarnessRejected, HarnessUnavailable
from harness_audit.listing import LIST, LIST_V2, AuditQuery, Page, PageCursor
from harness_audit.logs import log

PATHS = {LIST_V2: "/audit/api/audits/listV2", LIST: "/audit/api/audits/list"}
RETRY_CAUSES = {429: "http_429"} | dict.fromkeys((500, 502, 503, 504), "http_5xx")
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
RETRY_AFTER_MAX_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0
# A 100-event page is under 1 MB; an error body is a few hundred bytes.
MAX_PAGE_BYTES = 32 * 1024 * 1024
MAX_ERROR_BYTES = 1024 * 1024
_AS_IT_ARRIVES = {"preload_content": False, "decode_content": False}  # bounded, never inflated
HINTS = {
    400: "Check HARNESS_ACCOUNT_ID, PAGE_SIZE, FILTER_MODULES, FILTER_ACTIONS and STATIC_FILTER",
    401: "Check HARNESS_API_KEY: the token is invalid, expired or revoked. Create a new token in "
    "Harness (My API Keys) and store it as a new version of the secret",
    403: "The token's principal lacks the core_audit_view permission on account {account}: "
    "grant a role with 'Audit View' (e.g. Account Viewer) to the user or service account that "
    "owns the token, or check HARNESS_ACCOUNT_ID",
    404: "Neither listV2 nor list exists at HARNESS_API_BASE: check the host, and whether your "
    "installation serves the API under /gateway",
}
HINTS[405] = HINTS[404]  # neither listV2 nor list is there
HINTS |= dict.fromkeys(range(300, 400), "HARNESS_API_BASE redirects: set it to the final https URL")


class EndpointChoice:
    """listV2 first, as the guide names it; list, which every Harness SDK calls, when listV2
    answers 404/405 before it was ever seen to work. Kept by the instance, logged once."""

    def __init__(self):
        self.current, self._confirmed, self._lock = LIST_V2, False, threading.Lock()

    def confirm(self, endpoint: str) -> None:
        with self._lock:
            if self._confirmed or endpoint != self.current:
                return
            self._confirmed = True
        log(logging.INFO, "paging Harness's audit listing", endpoint=endpoint, path=PATHS[endpoint])

    def fall_back(self, endpoint: str) -> bool:
        with self._lock:
            if self._confirmed or endpoint != LIST_V2 or self.current != LIST_V2:
                return False
            self.current = LIST
        log(logging.WARNING, "listV2 is missing at HARNESS_API_BASE; using the list endpoint")
        return True


class Pacer:
    """Requests to Harness spaced evenly below its limit (400 a minute per key, then a 429 with
    no Retry-After), retries included, so a backlog drains at full pace and never meets the
    limit. One pacer per instance: back-to-back runs keep the spacing."""

    def __init__(self, requests_per_minute: int, clock: Clock):
        # 0: no pacing (a self-managed installation without the edge throttle, benchmarks).
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._clock, self._next_slot, self._lock = clock, float("-inf"), threading.Lock()

    def wait(self, deadline: Deadline) -> None:
        """Wait for the next request's slot; DeadlineReached if it comes too late."""
        with self._lock:
            now = self._clock.monotonic()
            slot = max(now, self._next_slot)
            delay = slot - now
            if delay and delay >= deadline.remaining():
                raise DeadlineReached(f"the next request's slot is {delay:.2f} s away")
            self._next_slot = slot + self._interval
        if delay:
            self._clock.sleep(delay)


class _Failed(Exception):
    """One attempt failed in a way worth retrying; ``retry_after`` is the header as sent."""

    def __init__(self, cause: str, detail: str, retry_after: str | None = None):
        super().__init__(detail)
        self.cause, self.detail, self.retry_after = cause, detail, retry_after


class HarnessClient:
    """One run's requests, over one kept-alive urllib3 connection, reconnected after a close
    and verifying TLS as its pools do. Pacer and endpoint choice belong to the instance."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        pacer: Pacer,
        endpoint: EndpointChoice | None = None,
        jitter: Callable[[], float] = random.random,
    ):
        self._config, self._clock, self._pacer = config, clock, pacer
        self._endpoint, self._jitter = endpoint or EndpointChoice(), jitter
        self._headers = {"x-api-key": config.api_key, "Content-Type": "application/json"}
        self._headers |= {"Accept": "application/json", "Accept-Encoding": "identity"}
        parts = urlsplit(config.api_base)
        connection_class = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        self._connection = connection_class(parts.hostname, parts.port)
        self._base_path = parts.path.rstrip("/")
        self._sock: socket.socket | None = None  # the socket the current request uses
        self.requests, self.retries, self.last_failure = 0, Counter(), None  # for the summary

    def close(self) -> None:
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
                self._endpoint.confirm(endpoint)
                return page
            except HarnessRejected as rejection:
                if rejection.status not in (404, 405) or not self._endpoint.fall_back(endpoint):
                    raise
            except _Failed as failure:
                failures += 1
                self._back_off(failure, failures, deadline)

    def _back_off(self, failure: _Failed, failures: int, deadline: Deadline) -> None:
        """Count the failure; wait before the next attempt, unless retries or time are spent."""
        self.retries[failure.cause] += 1
        self.last_failure = f"{failure.cause}: {failure.detail}"
        if failures > self._config.max_retries:
            raise HarnessUnavailable(
                f"Harness did not answer usably through {self._config.max_retries} retries "
                f"({failure.detail}). The next run resumes from the checkpoint; if "
                "this persists, check HARNESS_API_BASE and Harness's status page"
            ) from None
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (failures - 1))
        delay = self._jitter() * ceiling
        with contextlib.suppress(ValueError):  # an HTTP date, or junk: the backoff applies
            seconds = float(failure.retry_after or "nan")
            delay = min(seconds, RETRY_AFTER_MAX_SECONDS) if 0 <= seconds < float("inf") else delay
        if delay >= deadline.remaining():
            raise DeadlineReached(f"a {delay:.1f} s backoff after {failure.cause} would pass it")
        fields = {"cause": failure.cause, "detail": failure.detail, "retry": failures}
        fields["backoff_seconds"] = round(delay, 3)
        log(logging.WARNING, "retrying a Harness request", **fields)
        self._clock.sleep(delay)

    def _attempt(self, endpoint: str, query: AuditQuery, cursor: PageCursor, deadline) -> Page:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise DeadlineReached("no time left for another request")
        self.requests += 1
        passed = threading.Event()
        watchdog = threading.Timer(remaining, self._cut, (passed,))
        watchdog.start()
        try:
            try:
                status, headers, data = self._exchange(endpoint, query, cursor, remaining, passed)
            finally:  # joined: a cut still running must not reach the next attempt
                watchdog.cancel()
                watchdog.join()
        except (_Failed, DeadlineReached, HTTPException, HTTPError, OSError) as exc:
            self.close()
            if passed.is_set() or deadline.remaining() <= 0:
                raise DeadlineReached("the deadline passed while Harness was answering") from None
            raise exc if isinstance(exc, _Failed | DeadlineReached) else _failure(exc) from None
        if deadline.remaining() <= 0:  # an answer completed past the deadline is not used
            raise DeadlineReached("the deadline passed while Harness's answer arrived")
        if 200 <= status < 300:
            try:
                return listing.parse_page(data, endpoint, cursor, self._config.page_size)
            except listing.MalformedPage as exc:
                raise _Failed("malformed_body", f"HTTP {status} with a bad body: {exc}") from None
        payload = None
        with contextlib.suppress(ValueError, RecursionError):  # an error body may be anything
            payload = json.loads(data)
        if status in RETRY_CAUSES:
            detail = f"HTTP {status} ({listing.error_summary(payload)})"
            raise _Failed(RETRY_CAUSES[status], detail, headers.get("Retry-After"))
        hint = HINTS.get(status, "Check HARNESS_API_BASE and the Harness status page")
        fields = listing.error_fields(payload)
        raise HarnessRejected(status, *fields, hint.format(account=self._config.account_id))

    def _exchange(self, endpoint, query, cursor, remaining, passed) -> tuple:
        """(status, headers, body) of the answer; the body bounded, never inflated."""
        connection = self._connection
        if not connection.is_connected:
            connection.close()
            connection.timeout = min(CONNECT_TIMEOUT_SECONDS, remaining)
            connection.connect()
            if passed.is_set():  # the watchdog came while the socket did not exist yet
                raise DeadlineReached("the deadline passed while connecting to Harness")
        # Kept apart: http.client lets go of the socket of an answer that closes it.
        self._sock = connection.sock
        connection.timeout = min(READ_TIMEOUT_SECONDS, remaining)  # set per request
        size = cursor.size or self._config.page_size
        params = {"accountIdentifier": self._config.account_id, "pageSize": size}
        params |= {"pageIndex": cursor.index} if endpoint == LIST else {"pageToken": cursor.token}
        params = {name: value for name, value in params.items() if value is not None}
        target = f"{self._base_path}{PATHS[endpoint]}?{urlencode(params)}"
        connection.request("POST", target, body=query.body, headers=self._headers, **_AS_IT_ARRIVES)
        response = connection.getresponse()
        ok = 200 <= response.status < 300
        encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
        if ok and encoding != "identity":  # refused unread: it could be a gzip bomb
            detail = f"Content-Encoding {encoding[:40]!r}, never asked for"
            raise _Failed("malformed_body", f"HTTP {response.status} with a bad body: {detail}")
        limit = MAX_PAGE_BYTES if ok else MAX_ERROR_BYTES
        data = bytearray()
        while chunk := response.read1(64 * 1024):
            data += chunk
            if len(data) > limit:
                raise _Failed("body_too_large", f"the answer is larger than {limit} bytes")
        return response.status, response.headers, bytes(data)

    def _cut(self, passed: threading.Event) -> None:
        """The deadline came (on the watchdog's thread): unblock whatever read is waiting."""
        passed.set()
        with contextlib.suppress(OSError, AttributeError):  # no socket yet, or closed
            self._sock.shutdown(socket.SHUT_RDWR)


def _failure(exc: BaseException) -> _Failed:
    # urllib3 makes a refused connection a ConnectTimeoutError too: it is named first.
    if isinstance(exc, NewConnectionError):
        return _Failed("connection", f"could not connect to Harness: {str(exc)[:300]}")
    if isinstance(exc, TimeoutError | Urllib3Timeout):
        return _Failed("timeout", f"Harness did not answer in time ({type(exc).__name__})")
    return _Failed("connection", f"{type(exc).__name__}: {str(exc)[:300]}")
