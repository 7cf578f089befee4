"""The Harness audit API: one page per call, retried, bounded, and errors mapped to what to do.

The client only sends and retries; which range to ask for is ``paging``'s business.

One retry policy covers everything that can go wrong with a request: 429 and 5xx, refused
or cut connections, timeouts, and 2xx bodies that are not the expected page. It is a short
loop rather than urllib3's ``Retry`` because three things must happen around every attempt,
retries included, that ``Retry`` has no place for: waiting for the pacer's slot, bounding the
attempt by what is left of the run's deadline, and treating a malformed 200 as a failure.
Backoff is full jitter, capped; a Retry-After, if Harness ever sends one, is honoured up to
a minute.

Every response is read in chunks, against a size cap and the deadline, without decoding a
content encoding that was never asked for: a hostile or broken answer costs a retry, never
the instance's memory or the run's time.
"""

import json
import logging
import random
import threading
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)

from harness_audit.clock import Clock, Deadline
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
    """The requests of one run. Pool, pacer and endpoint choice belong to the instance."""

    def __init__(
        self,
        *,
        api_base: str,
        account_id: str,
        api_key: str,
        page_size: int,
        max_retries: int,
        clock: Clock,
        pool: urllib3.PoolManager,
        pacer: Pacer,
        endpoint: EndpointChoice,
        jitter: Callable[[], float] = random.random,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ):
        self._api_base = api_base
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
        self._pool = pool
        self._pacer = pacer
        self._endpoint = endpoint
        self._jitter = jitter
        self._max_page_bytes = max_page_bytes
        self.requests = 0  # HTTP requests sent, retries included
        self.retries: Counter = Counter()
        self.last_failure: str | None = None

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
        try:
            response = self._pool.request(
                "POST",
                self._url(endpoint, cursor),
                body=query.body,
                headers=self._headers,
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
                timeout=urllib3.Timeout(
                    connect=min(CONNECT_TIMEOUT_SECONDS, remaining),
                    read=min(READ_TIMEOUT_SECONDS, remaining),
                ),
            )
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError) as exc:
            raise self._timed_out(exc, deadline) from None
        except NewConnectionError as exc:
            raise _Failed("connection", f"cannot connect: {_reason(exc)}") from None
        except (HTTPError, OSError) as exc:
            raise _Failed("connection", f"{type(exc).__name__}: {_reason(exc)}") from None
        try:
            status = response.status
            success = 200 <= status < 300
            limit = self._max_page_bytes if success else MAX_ERROR_BYTES
            data = self._read(response, limit, deadline)
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        finally:
            response.release_conn()
        if success:
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
                _retry_after(response.headers.get("Retry-After")),
            )
        rejection = self._rejection(status, data)
        if status in (404, 405) and endpoint == LIST_V2:
            raise _EndpointMissing(rejection)
        raise rejection

    def _read(self, response, limit: int, deadline: Deadline) -> bytes:
        """The body, read as it arrives: at most ``limit`` bytes, and never past the deadline
        (a server trickling a byte at a time would otherwise reset the read timeout forever).
        """
        chunks: list[bytes] = []
        size = 0
        try:
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
        except (ReadTimeoutError, TimeoutError) as exc:
            raise self._timed_out(exc, deadline) from None
        except (HTTPError, OSError) as exc:
            raise _Failed("connection", f"the answer was cut: {_reason(exc)}") from None
        finally:
            if size > limit or deadline.remaining() <= 0:
                response.close()

    @staticmethod
    def _timed_out(exc: BaseException, deadline: Deadline) -> Exception:
        if deadline.remaining() <= 0:
            return DeadlineReached("the deadline passed while waiting for Harness")
        return _Failed("timeout", f"Harness did not answer in time ({type(exc).__name__})")

    def _url(self, endpoint: str, cursor: PageCursor) -> str:
        params: dict = {"accountIdentifier": self._account_id, "pageSize": self._page_size}
        if endpoint == LIST_V2:
            if cursor.token is not None:
                params["pageToken"] = cursor.token
        else:
            params["pageIndex"] = cursor.index
        return f"{self._api_base}{PATHS[endpoint]}?{urlencode(params)}"

    def _rejection(self, status: int, data: bytes) -> HarnessRejected:
        code, message, correlation_id = error_fields(_decoded(data))
        return HarnessRejected(
            status, code, message, correlation_id, _hint(status, self._account_id)
        )


def new_pool() -> urllib3.PoolManager:
    """Connections to Harness, kept across the runs of an instance."""
    return urllib3.PoolManager(maxsize=2)


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
