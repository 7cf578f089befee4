"""The Harness audit API: one page per call, with retries, and errors mapped to what to do.

The client only sends and retries. Which page comes next is the caller's business: it gets
a ``Cursor`` back and hands it in again, so a window can be resumed in another run.

Retries go through urllib3's ``Retry`` (POST is allowed explicitly: listing is read-only),
with full-jitter exponential backoff and a pause that refuses to outlive the run's deadline.
A 200 whose body is not the expected JSON is counted by the same policy as a read error
(``retry_malformed``), once the pager has found it malformed. The shapes it sends and
receives are in ``listing``.
"""

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlencode

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from harness_audit.clock import Clock, Deadline
from harness_audit.errors import DeadlineReached, HarnessRejected, HarnessUnavailable
from harness_audit.listing import (
    LIST,
    LIST_V2,
    AuditQuery,
    Cursor,
    MalformedPage,
    Page,
    parse_page,
)
from harness_audit.logs import log

_PATHS = {LIST_V2: "/audit/api/audits/listV2", LIST: "/audit/api/audits/list"}
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
RETRY_AFTER_MAX_SECONDS = 60
WARNING = 30
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0


class JitteredRetry(Retry):
    """urllib3's Retry with full-jitter backoff, an injectable pause, and a retry observer."""

    def __init__(
        self,
        *args,
        pause: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        observe: Callable[[str], None] = lambda cause: None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.pause = pause
        self.jitter = jitter
        self.observe = observe

    def new(self, **kw):
        retry = super().new(**kw)
        retry.pause, retry.jitter, retry.observe = self.pause, self.jitter, self.observe
        return retry

    def get_backoff_time(self) -> float:
        # Full jitter (uniform between 0 and the exponential ceiling) spreads the retries of
        # concurrent clients; urllib3's own formula waits 0 before the first retry.
        failures = len(self.history)
        if failures == 0:
            return 0.0
        ceiling = min(self.backoff_max, self.backoff_factor * 2 ** (failures - 1))
        return self.jitter() * ceiling

    def sleep_for_retry(self, response) -> bool:
        retry_after = self.get_retry_after(response)  # capped at retry_after_max
        if retry_after:
            self.pause(retry_after)
            return True
        return False

    def _sleep_backoff(self) -> None:
        backoff = self.get_backoff_time()
        if backoff > 0:
            self.pause(backoff)

    def increment(
        self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None
    ):
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        self.observe(retry_cause(response, error))
        return retry


def retry_cause(response, error) -> str:
    """A short label for why a request is retried, for logs and the run summary."""
    if response is not None and response.status:
        return "http_429" if response.status == 429 else f"http_{response.status // 100}xx"
    if isinstance(error, MalformedPage):
        return "malformed_body"
    if isinstance(error, NewConnectionError):
        return "connection"
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
        return "timeout"
    if isinstance(error, ProtocolError):
        return "connection"
    return type(error).__name__ if error is not None else "unknown"


_sent_hooks = threading.local()


def _notify_request_sent() -> None:
    hook = getattr(_sent_hooks, "hook", None)
    if hook is not None:
        _sent_hooks.hook = None
        hook()


class _SignalsSent:
    """Tells the caller when its request has left, before waiting for the answer."""

    def getresponse(self, *args, **kwargs):
        _notify_request_sent()
        return super().getresponse(*args, **kwargs)


class _SignallingHTTPConnection(_SignalsSent, HTTPConnection):
    pass


class _SignallingHTTPSConnection(_SignalsSent, HTTPSConnection):
    pass


class _SignallingHTTPPool(HTTPConnectionPool):
    ConnectionCls = _SignallingHTTPConnection


class _SignallingHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _SignallingHTTPSConnection


def new_pool() -> urllib3.PoolManager:
    """A PoolManager whose requests can report that they have been sent (see fetch_raw)."""
    pool = urllib3.PoolManager(maxsize=4)
    pool.pool_classes_by_scheme = {"http": _SignallingHTTPPool, "https": _SignallingHTTPSPool}
    return pool


class HarnessClient:
    def __init__(
        self,
        *,
        api_base: str,
        account_id: str,
        api_key: str,
        page_size: int,
        max_retries: int,
        clock: Clock,
        pool: urllib3.PoolManager | None = None,
        jitter: Callable[[], float] = random.random,
    ):
        self._api_base = api_base
        self._account_id = account_id
        self._headers = {
            "x-api-key": api_key,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._page_size = page_size
        self._max_retries = max_retries
        self._clock = clock
        self._jitter = jitter
        self._pool = pool or new_pool()
        self.retries: Counter = Counter()
        self.calls = 0
        self._retry_cache: tuple[Deadline, JitteredRetry] | None = None

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included."""
        return self.calls + sum(n for cause, n in self.retries.items() if cause != "malformed_body")

    def fetch_raw(
        self,
        query: AuditQuery,
        cursor: Cursor,
        deadline: Deadline,
        retry: "JitteredRetry | None" = None,
        on_sent: Callable[[], None] | None = None,
    ) -> tuple[Cursor, bytes]:
        """One page's body as Harness sent it, and the cursor it answers.

        Retries 429, 5xx, timeouts and cut connections. Falls back from listV2 to the list
        endpoint when listV2 does not exist (older and self-managed installations).
        ``on_sent`` is called once, as soon as the request has left (or has failed to).
        """
        _sent_hooks.hook = on_sent
        try:
            return cursor, self._request(query, cursor, deadline, retry)
        except _EndpointMissing as missing:
            if cursor.endpoint == LIST_V2 and cursor.is_first_page:
                fallback = Cursor(endpoint=LIST)
                log(WARNING, "listV2 is missing at HARNESS_API_BASE; using the list endpoint")
                return fallback, self._request(query, fallback, deadline, None)
            raise missing.rejection from None
        finally:
            _notify_request_sent()

    def parse(self, data: bytes, cursor: Cursor) -> Page:
        """The page in ``data``; MalformedPage when it is not a complete SUCCESS envelope."""
        return parse_page(data, cursor, self._page_size)

    def retry_malformed(
        self,
        retry: "JitteredRetry | None",
        cursor: Cursor,
        error: "MalformedPage",
        deadline: Deadline,
    ) -> "JitteredRetry":
        """Count a malformed page against MAX_RETRIES and wait out its backoff."""
        retry = retry or self._new_retry(deadline)
        try:
            retry = retry.increment("POST", self._url(cursor), error=error)
        except MaxRetryError:
            raise HarnessUnavailable(
                f"Harness kept answering with a body that is not the expected JSON ({error}) "
                f"through {self._max_retries} retries. The next run resumes from the checkpoint"
            ) from None
        retry.sleep()
        return retry

    def _request(
        self, query: AuditQuery, cursor: Cursor, deadline: Deadline, retry: "JitteredRetry | None"
    ) -> bytes:
        url = self._url(cursor)
        timeout = self._timeout(deadline)
        self.calls += 1
        try:
            response = self._pool.request(
                "POST",
                url,
                body=query.body,
                headers=self._headers,
                retries=retry or self._new_retry(deadline),
                timeout=timeout,
            )
        except MaxRetryError as exc:
            raise HarnessUnavailable(
                f"Harness did not answer usably after {self._max_retries} retries: "
                f"{_describe(exc.reason)}. The next run resumes from the checkpoint; if "
                "this persists, check HARNESS_API_BASE and Harness's status page"
            ) from None
        except HTTPError as exc:
            raise HarnessUnavailable(f"request to Harness failed: {_describe(exc)}") from None
        status = response.status
        if 200 <= status < 300:
            return response.data
        if status in RETRYABLE_STATUSES:
            raise HarnessUnavailable(
                f"Harness answered HTTP {status} through {self._max_retries} retries "
                f"({_error_summary(response.data)}). The next run resumes from the checkpoint"
            )
        if status in (404, 405) and cursor.endpoint == LIST_V2:
            raise _EndpointMissing(self._rejection(response))
        raise self._rejection(response)

    def _url(self, cursor: Cursor) -> str:
        params: dict = {"accountIdentifier": self._account_id, "pageSize": self._page_size}
        if cursor.endpoint == LIST_V2:
            if cursor.token is not None:
                params["pageToken"] = cursor.token
        else:
            params["pageIndex"] = cursor.index
        return f"{self._api_base}{_PATHS[cursor.endpoint]}?{urlencode(params)}"

    def _new_retry(self, deadline: Deadline) -> JitteredRetry:
        """The retry policy of a run. Retry objects are never changed (increment returns a
        new one), so one serves every request under the same deadline."""
        cached = self._retry_cache
        if cached is not None and cached[0] is deadline:
            return cached[1]

        def pause(seconds: float) -> None:
            if seconds >= deadline.remaining():
                raise DeadlineReached(f"a {seconds:.1f} s backoff would pass the deadline")
            self._clock.sleep(seconds)

        retry = JitteredRetry(
            total=self._max_retries,
            allowed_methods=frozenset({"POST"}),
            status_forcelist=RETRYABLE_STATUSES,
            backoff_factor=BACKOFF_BASE_SECONDS,
            backoff_max=BACKOFF_MAX_SECONDS,
            retry_after_max=RETRY_AFTER_MAX_SECONDS,
            raise_on_status=False,
            redirect=False,
            pause=pause,
            jitter=self._jitter,
            observe=self._observe,
        )
        self._retry_cache = (deadline, retry)
        return retry

    def _observe(self, cause: str) -> None:
        self.retries[cause] += 1
        log(
            WARNING,
            "retrying a Harness request",
            cause=cause,
            retries_so_far=sum(self.retries.values()),
        )

    @staticmethod
    def _timeout(deadline: Deadline) -> urllib3.Timeout:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise DeadlineReached("no time left for another request")
        return urllib3.Timeout(
            connect=min(CONNECT_TIMEOUT_SECONDS, max(remaining, 1.0)),
            read=min(READ_TIMEOUT_SECONDS, max(remaining, 1.0)),
        )

    def _rejection(self, response) -> HarnessRejected:
        code, message, correlation_id = _error_fields(response.data)
        return HarnessRejected(
            response.status, code, message, correlation_id, _hint(response.status, self._account_id)
        )


class _EndpointMissing(Exception):
    def __init__(self, rejection: HarnessRejected):
        self.rejection = rejection


def _error_fields(data: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        payload = json.loads(data)
    except ValueError:
        return None, None, None
    if not isinstance(payload, dict):
        return None, None, None
    return payload.get("code"), payload.get("message"), payload.get("correlationId")


def _error_summary(data: bytes) -> str:
    code, message, _ = _error_fields(data)
    if code or message:
        return f"{code}: {message}"
    return "body is not Harness JSON"


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
            "Check HARNESS_ACCOUNT_ID, PAGE_SIZE, FILTER_MODULES, FILTER_ACTIONS and "
            "STATIC_FILTER. If the message names the page token, the saved token is no "
            "longer accepted: see 'Reset the checkpoint' in the README"
        )
    if status in (404, 405):
        return (
            "Neither listV2 nor list exists at HARNESS_API_BASE: check the host, and "
            "whether your installation serves the API under /gateway"
        )
    if 300 <= status < 400:
        return "HARNESS_API_BASE redirects: set it to the final https URL"
    return "Check HARNESS_API_BASE and the Harness status page"


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, MaxRetryError | HTTPError) and getattr(exc, "reason", None):
        return f"{type(exc).__name__}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
