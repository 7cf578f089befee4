"""One run: read the checkpoint, page the window, write parts, checkpoint after each.

Order of effects, which is what makes a crash at any point lossless and duplicate-free:

1. Read the checkpoint; a live lease held by another run ends this one, untouched.
2. Fetch the first page. A rejected key or a Harness outage ends the run here, with
   nothing written and the checkpoint untouched.
3. Take the lease (a write under the generation read in 1).
4. Page on. When the buffer would pass MAX_OBJECT_MB, write it as a part (create-only),
   then checkpoint the cursor of the first page not in it. Never the other way round.
   A writer thread does this, part after part in order, while paging goes on.
5. At the end of the window, or at the deadline, write the rest and checkpoint: the
   window's end becomes the watermark, or the cursor is kept for the next run.
"""

import json
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from harness_audit.checkpoint import LEASE_MARGIN_SECONDS, CheckpointStore
from harness_audit.clock import Clock, Deadline, write_reserve_seconds
from harness_audit.config import Config
from harness_audit.errors import CollectorError, DeadlineReached, LeaseHeld, LeaseLost
from harness_audit.harness_client import HarnessClient, new_pool
from harness_audit.layout import OutputFormat, layout_function
from harness_audit.listing import AuditQuery, Cursor, Page
from harness_audit.logs import log
from harness_audit.pages import PrefetchingPages
from harness_audit.sink import ObjectSink, PartBuffer, iso, object_name
from harness_audit.state import ORIGIN_GUIDE, State, WindowProgress
from harness_audit.window import (
    Deduplicator,
    complete_window,
    event_identity,
    plan_window,
    tail_ids,
)

INFO, WARNING = 20, 30
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


@dataclass
class RunSummary:
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    window_complete: bool = False
    resumed: bool = False
    events_written: int = 0
    duplicates_dropped: int = 0
    pages: int = 0
    requests: int = 0
    retries: Counter = field(default_factory=Counter)
    objects: list[str] = field(default_factory=list)
    watermark_ms: int | None = None
    lag_seconds: float | None = None
    stopped_by: str = ""

    def fields(self) -> dict:
        return {
            "events_written": self.events_written,
            "duplicates_dropped": self.duplicates_dropped,
            "pages": self.pages,
            "requests": self.requests,
            "retries": dict(self.retries),
            "objects": self.objects,
            "window_start": iso(self.window_start_ms) if self.window_start_ms else None,
            "window_end": iso(self.window_end_ms) if self.window_end_ms else None,
            "window_complete": self.window_complete,
            "resumed": self.resumed,
            "checkpoint": iso(self.watermark_ms) if self.watermark_ms else None,
            "lag_seconds": self.lag_seconds,
            "stopped_by": self.stopped_by,
        }


def _encode_event(event: dict) -> str:
    text = _ENCODER.encode(event)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate (from a \ud800 escape): keep it escaped
        return _ASCII_ENCODER.encode(event)
    return text


def _wait(in_flight: Future | None) -> None:
    """Let the part being written finish; raise what writing it raised."""
    if in_flight is not None:
        in_flight.result()


class Collector:
    """Everything a run needs that outlives it: configuration, clients, clock."""

    def __init__(self, config: Config, *, bucket, clock: Clock):
        self.config = config
        self._bucket = bucket
        self._clock = clock
        self._pool = new_pool()  # connections to Harness, kept across runs of this instance

    def run(self) -> RunSummary:
        """One run. Safe to call from several threads at once: each run has its own state."""
        harness = HarnessClient(
            api_base=self.config.api_base,
            account_id=self.config.account_id,
            api_key=self.config.api_key,
            page_size=self.config.page_size,
            max_retries=self.config.max_retries,
            clock=self._clock,
            pool=self._pool,
        )
        checkpoints = CheckpointStore(
            self._bucket,
            self.config.state_key,
            lease_seconds=self.config.max_run_seconds + LEASE_MARGIN_SECONDS,
        )
        sink = ObjectSink(
            self._bucket, prefix=self.config.prefix, output_format=str(self.config.output_format)
        )
        return _Run(self.config, harness, checkpoints, sink, self._clock).execute()


class _Run:
    def __init__(
        self,
        config: Config,
        harness: HarnessClient,
        checkpoints: CheckpointStore,
        sink: ObjectSink,
        clock: Clock,
    ):
        self.config = config
        self.harness = harness
        self.checkpoints = checkpoints
        self.sink = sink
        self.clock = clock
        self.owner = uuid.uuid4().hex
        self.summary = RunSummary()
        self.layout = layout_function(config.output_format)
        self.verbatim = config.output_format is OutputFormat.API
        self.overlap_ms = config.overlap_seconds * 1000
        # The checkpoint as last written and its generation (set once the lease is ours), and
        # the window's progress: changed only by the thread that writes parts.
        self.state: State | None = None
        self.window: WindowProgress | None = None
        self.generation: int | None = None

    def execute(self) -> RunSummary:
        deadline = Deadline(
            self.clock,
            self.config.max_run_seconds,
            write_reserve_seconds(self.config.max_run_seconds),
        )
        snapshot = self.checkpoints.load()
        now_ms = self.clock.now_ms()
        # Checked before any request to Harness: a second invocation touches nothing.
        self.checkpoints.ensure_free(snapshot.state, self.owner, now_ms)
        state = snapshot.state
        if state.origin == ORIGIN_GUIDE:
            state = self._adopt_guide_state(state, now_ms)
        window = plan_window(
            state,
            now_ms,
            overlap_ms=self.overlap_ms,
            first_lookback_ms=self.config.start_minutes_back * 60_000,
        )
        summary = self.summary
        summary.window_start_ms, summary.window_end_ms = window.start_ms, window.end_ms
        summary.resumed = state.window is not None
        # Until this window completes, everything is delivered up to the last watermark
        # (or, on a first run, up to nothing before the window's start).
        summary.watermark_ms = state.watermark_ms or window.start_ms
        log(
            INFO,
            "run started",
            window_start=iso(window.start_ms),
            window_end=iso(window.end_ms),
            resumed=summary.resumed,
            next_part=window.next_part,
            checkpoint=self.checkpoints.uri,
        )
        try:
            self._page(snapshot, state, window, deadline)
        except CollectorError as exc:
            exc.summary = self._finish_summary()
            raise
        return self._finish_summary()

    def _adopt_guide_state(self, state: State, now_ms: int) -> State:
        since_ms = state.watermark_ms - self.overlap_ms
        delivered = self.sink.ids_written_since(since_ms, now_ms)
        log(
            INFO,
            "continuing from the guide's checkpoint",
            since=iso(state.watermark_ms),
            window_start=iso(since_ms),
            ids_found_in_earlier_objects=len(delivered),
        )
        return replace(state, delivered=delivered)

    def _page(self, snapshot, state: State, window: WindowProgress, deadline: Deadline):
        query = AuditQuery(
            window.start_ms,
            window.end_ms,
            self.config.modules,
            self.config.actions,
            self.config.static_filter,
        )
        dedup = Deduplicator(state.delivered, window.committed, window.ahead)
        self.state, self.window = state, window
        cursor: Cursor = window.cursor  # the first page not in a part handed to the writer
        pages_done = window.pages
        buffer = PartBuffer()
        pages = PrefetchingPages(self.harness, query, cursor, deadline)
        # Parts are uploaded (and checkpointed, in order) by a writer thread while paging
        # goes on; one part at most waits for it, so memory stays at two parts.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-writer")
        in_flight: Future | None = None
        try:
            for fetched in pages:
                if self.generation is None:
                    # The window is saved with the lease, so that a run taking over after a
                    # crash resumes this very window and finds the parts already written.
                    self.state, self.generation = self.checkpoints.acquire(
                        replace(state, window=window),
                        snapshot.generation,
                        self.owner,
                        self.clock.now_ms(),
                    )
                batch = self._encode(fetched.page, dedup, window.end_ms)
                if len(buffer) and buffer.size + batch.size > self.config.max_object_bytes:
                    # The part ends before this page, so its checkpoint can point at it.
                    if in_flight is not None:
                        in_flight.result()
                    in_flight = writer.submit(self._write, buffer, fetched.cursor, pages_done)
                    buffer = PartBuffer()
                buffer.extend(batch)
                pages_done += 1
                self.summary.pages += 1
                cursor = fetched.page.next_cursor
            _wait(in_flight)
            self._write(buffer, None, pages_done)
            self._complete()
        except DeadlineReached:
            self.summary.stopped_by = "deadline"
            if self.generation is not None:
                _wait(in_flight)
                self._write(buffer, cursor, pages_done)
                self._release()
        except CollectorError as failure:
            # Keep what was fetched: write it, checkpoint, free the lease, then fail.
            if self.generation is not None and not isinstance(failure, LeaseHeld | LeaseLost):
                try:
                    _wait(in_flight)
                    self._write(buffer, cursor, pages_done)
                    self._release()
                except CollectorError as secondary:
                    log(WARNING, "could not checkpoint after the failure", error=str(secondary))
            raise
        finally:
            pages.close()
            writer.shutdown(wait=True)

    def _encode(self, page: Page, dedup: Deduplicator, end_ms: int) -> PartBuffer:
        """The page's new events as JSONL: Harness's own text for each event in the API
        layout, an encoding of the mapped event otherwise."""
        lines: list[str] = []
        ids: list[tuple[str, int]] = []
        sources = page.sources if self.verbatim else None
        is_new = dedup.is_new
        for index, event in enumerate(page.events):
            if not isinstance(event, dict):
                continue
            audit_id, timestamp = event.get("auditId"), event.get("timestamp")
            if type(audit_id) is not str or not audit_id or type(timestamp) is not int:
                audit_id, timestamp = event_identity(event, fallback_ms=end_ms)
            if not is_new(audit_id):
                self.summary.duplicates_dropped += 1
                continue
            source = sources[index] if sources else None
            lines.append(source if source is not None else _encode_event(self.layout(event)))
            ids.append((audit_id, timestamp))
        batch = PartBuffer()
        batch.add_lines(lines, ids)
        return batch

    def _write(self, buffer: PartBuffer, cursor: Cursor | None, pages: int) -> None:
        """Write the buffer as the next part(s), then checkpoint ``cursor`` (None: the window
        is done, and _complete checkpoints). Runs in one thread at a time, in order."""
        window = self.window
        part = window.next_part
        # Grown in place: these maps hold up to an overlap's worth of ids, and copying them
        # at every part would double that memory.
        committed = window.committed
        ahead = window.ahead
        written = 0
        since_ms = window.end_ms - self.overlap_ms
        if ahead:
            # Pages encoded while an earlier part was being found already written hold
            # events that part has: the writer is the one that knows, so it drops them.
            remaining = buffer.without(ahead)
            self.summary.duplicates_dropped += len(buffer) - len(remaining)
            buffer = remaining
        while len(buffer):
            name = object_name(self.config.prefix, window.start_ms, window.end_ms, part)
            if self.sink.create(
                name, buffer, start_ms=window.start_ms, end_ms=window.end_ms, part=part
            ):
                committed.update(tail_ids(buffer.ids, since_ms))
                written += len(buffer)
                self.summary.objects.append(self.sink.uri(name))
                log(INFO, "wrote part", object=self.sink.uri(name), events=len(buffer), part=part)
                part += 1
                break
            # An earlier attempt at this window wrote this part and died before its
            # checkpoint: deliver only what that part lacks, and remember what it holds.
            existing = self.sink.read_ids(name)
            ahead.update(existing)
            remaining = buffer.without(existing)
            self.summary.duplicates_dropped += len(buffer) - len(remaining)
            log(
                WARNING,
                "part already written by an earlier attempt; skipping what it holds",
                object=self.sink.uri(name),
                events_in_part=len(existing),
                events_it_lacks=len(remaining),
            )
            buffer = remaining
            part += 1
        self.summary.events_written += written
        self.window = replace(
            window,
            cursor=cursor or window.cursor,
            next_part=part,
            pages=pages,
            events_written=window.events_written + written,
        )
        if cursor is not None:
            now_ms = self.clock.now_ms()
            state = replace(self.state, window=self.window)
            self.state = self.checkpoints.renewed(state, self.owner, now_ms)
            self.generation = self.checkpoints.save(self.state, self.generation, now_ms)

    def _complete(self) -> None:
        done = complete_window(self.state, self.window, overlap_ms=self.overlap_ms)
        done = replace(done, lease=None)
        self.generation = self.checkpoints.save(done, self.generation, self.clock.now_ms())
        self.summary.window_complete = True
        self.summary.stopped_by = "window complete"
        self.summary.watermark_ms = self.window.end_ms

    def _release(self) -> None:
        self.generation = self.checkpoints.save(
            replace(self.state, lease=None), self.generation, self.clock.now_ms()
        )

    def _finish_summary(self) -> RunSummary:
        self.summary.requests = self.harness.requests
        self.summary.retries = Counter(self.harness.retries)
        if self.summary.watermark_ms is not None:
            lag = (self.clock.now_ms() - self.summary.watermark_ms) / 1000
            self.summary.lag_seconds = round(lag, 3)
        return self.summary
