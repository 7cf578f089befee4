"""The pages of one window, fetched one ahead by a background thread.

Paging stays sequential (one request in flight, each with the previous page's token), but
the next request leaves as soon as the current page is parsed, from the thread that parsed
it. The API's latency then overlaps with encoding and uploading in the run's thread instead
of adding to them. At most one parsed page waits in the queue, so memory stays flat.
"""

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from harness_audit.clock import Deadline
from harness_audit.errors import DeadlineReached
from harness_audit.harness_client import AuditQuery, Cursor, HarnessClient, Page


@dataclass(frozen=True)
class FetchedPage:
    cursor: Cursor  # the cursor this page was fetched with: where a resumed run restarts
    page: Page


class _Stop:
    """The producer's last item: why it stopped (None: the window has no more pages)."""

    def __init__(self, error: BaseException | None, cursor: Cursor | None):
        self.error = error
        self.cursor = cursor


class PrefetchingPages:
    """Iterate ``FetchedPage``s from ``cursor`` to the window's end.

    Raises what fetching raised, at the point in the sequence where it happened:
    DeadlineReached (with no time left for another page) included.
    """

    def __init__(self, harness: HarnessClient, query: AuditQuery, cursor: Cursor,
                 deadline: Deadline):
        self._harness = harness
        self._query = query
        self._cursor = cursor
        self._deadline = deadline
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="harness-pages",
                                        daemon=True)

    def __iter__(self) -> Iterator[FetchedPage]:
        self._thread.start()
        while True:
            item = self._queue.get()
            if isinstance(item, _Stop):
                if item.error is not None:
                    raise item.error
                return
            yield item

    def close(self) -> None:
        """Stop fetching; a page fetched ahead and not consumed is dropped."""
        self._stopping.set()
        while True:  # unblock a producer waiting to put
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def _produce(self) -> None:
        cursor: Cursor | None = self._cursor
        try:
            while cursor is not None and not self._stopping.is_set():
                if self._deadline.expired():
                    raise DeadlineReached("MAX_RUN_SECONDS is nearly spent")
                page = self._harness.fetch_page(self._query, cursor, self._deadline)
                self._put(FetchedPage(cursor, page))
                cursor = page.next_cursor
            self._put(_Stop(None, None))
        except BaseException as error:  # handed to the consumer, raised there
            self._put(_Stop(error, cursor))

    def _put(self, item) -> None:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
