"""The pages of one window: fetched by a background thread, decoded and checked here.

Paging stays sequential: one request in flight, each with the previous page's token. To
keep the API's latency off the critical path, the fetching thread reads the next token
from the tail of the raw body (``guess_next_cursor``) and sends the next request at once,
while this thread decodes the page. The decoded page is the truth: when it disagrees with
the guess, or is malformed, the fetcher is restarted from the right cursor and whatever it
fetched meanwhile is dropped. At most one undecoded page waits, so memory stays flat.

    fetcher thread:  request(c1) -> guess c2 -> request(c2) -> guess c3 -> ...
    run thread:                     decode(p1), check c2, yield -> decode(p2), check c3 ...
"""

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from harness_audit.clock import Deadline
from harness_audit.errors import DeadlineReached
from harness_audit.harness_client import HarnessClient, JitteredRetry
from harness_audit.listing import AuditQuery, Cursor, MalformedPage, Page, guess_next_cursor


@dataclass(frozen=True)
class FetchedPage:
    cursor: Cursor  # the cursor this page answers: where a resumed run restarts
    page: Page


@dataclass(frozen=True)
class _Raw:
    cursor: Cursor
    data: bytes
    guess: Cursor | None


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _Fetcher:
    """One fetching thread, from one cursor on, with its own queue and stop flag."""

    def __init__(
        self,
        harness: HarnessClient,
        query: AuditQuery,
        cursor: Cursor,
        deadline: Deadline,
        retry: JitteredRetry | None,
    ):
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self._stopped = threading.Event()
        self._args = (harness, query, cursor, deadline, retry)
        self._pending: _Raw | None = None
        self._thread = threading.Thread(target=self._run, name="harness-pages", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        harness, query, cursor, deadline, retry = self._args
        try:
            while cursor is not None and not self._stopped.is_set():
                if deadline.expired():
                    raise DeadlineReached("MAX_RUN_SECONDS is nearly spent")
                # The previous page is handed over once this request has left: decoding it
                # earlier would hold the GIL while the request is being sent.
                used, data = harness.fetch_raw(
                    query, cursor, deadline, retry, on_sent=self._hand_over
                )
                retry = None
                cursor = guess_next_cursor(data, used)
                self._pending = _Raw(used, data, cursor)
            self._hand_over()
        except BaseException as error:  # handed to the run's thread, raised there
            self._hand_over()
            self._put(_Failed(error))

    def _hand_over(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._put(pending)

    def _put(self, item) -> None:
        while not self._stopped.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue


class PrefetchingPages:
    """Iterate the ``FetchedPage``s of a window from ``cursor`` to its end.

    Raises what fetching raised, where it happened in the sequence: HarnessRejected,
    HarnessUnavailable, or DeadlineReached when no time is left for another page.
    """

    def __init__(
        self, harness: HarnessClient, query: AuditQuery, cursor: Cursor, deadline: Deadline
    ):
        self._harness = harness
        self._query = query
        self._start = cursor
        self._deadline = deadline
        self._fetcher: _Fetcher | None = None

    def __iter__(self) -> Iterator[FetchedPage]:
        self._restart(self._start, None)
        malformed: JitteredRetry | None = None
        while True:
            item = self._fetcher.queue.get()
            if isinstance(item, _Failed):
                raise item.error
            try:
                page = self._harness.parse(item.data, item.cursor)
            except MalformedPage as error:
                # Counted and backed off like any failed request, then fetched again.
                malformed = self._harness.retry_malformed(
                    malformed, item.cursor, error, self._deadline
                )
                self._restart(item.cursor, malformed)
                continue
            malformed = None
            if page.next_cursor != item.guess:
                if page.next_cursor is None:
                    self._fetcher.stop()
                else:
                    self._restart(page.next_cursor, None)
            yield FetchedPage(item.cursor, page)
            if page.next_cursor is None:
                return

    def _restart(self, cursor: Cursor, retry: JitteredRetry | None) -> None:
        self.close()
        self._fetcher = _Fetcher(self._harness, self._query, cursor, self._deadline, retry)

    def close(self) -> None:
        """Stop fetching; what was fetched ahead and not consumed is dropped."""
        if self._fetcher is not None:
            self._fetcher.stop()
            self._fetcher = None
