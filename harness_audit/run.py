"""One run: read the checkpoint, page the window by time, write parts, checkpoint after each.

One plain loop in the invocation's thread. Its order of effects is what makes a crash at
any point lossless and duplicate-free:

1. Read the checkpoint; a live lease held by another run ends this one, untouched.
2. Fetch the first page. A rejected key or a Harness outage ends the run here, with
   nothing written and the checkpoint untouched.
3. Take the lease (a write under the generation read in 1).
4. Page on. When the next event would take the part past MAX_OBJECT_MB, write the part
   (create-only), then checkpoint the position just after its last event. Never the other
   way round.
5. At the end of the window, or at the deadline, write the rest and checkpoint: the
   window's end becomes the watermark, or the position is kept for the next run.
"""

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace

from harness_audit.checkpoint import LEASE_MARGIN_SECONDS, CheckpointStore, Snapshot
from harness_audit.clock import Clock, Deadline, iso, write_reserve_seconds
from harness_audit.config import Config
from harness_audit.continuation import Continuation
from harness_audit.errors import (
    CollectorError,
    DeadlineReached,
    HarnessInconsistent,
    InternalError,
    LeaseHeld,
    LeaseLost,
    NoProgress,
)
from harness_audit.harness_client import EndpointChoice, HarnessClient
from harness_audit.layout import encode_line, layout_function
from harness_audit.listing import AuditQuery
from harness_audit.logs import log
from harness_audit.migration import adopt_guide_state
from harness_audit.pacing import Pacer
from harness_audit.paging import PagingInconsistent, Position, Step, read_page
from harness_audit.sink import ObjectSink, PartBuffer, object_name
from harness_audit.state import ORIGIN_GUIDE, State, WindowProgress
from harness_audit.window import complete_window, plan_window, tail_ids

NOT_JSON = "not_json"  # a number JSON cannot carry (NaN, Infinity, 1e400)


@dataclass
class RunSummary:
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    window_complete: bool = False
    resumed: bool = False
    events_written: int = 0
    duplicates_dropped: int = 0  # already delivered: in the overlap, or in a found part
    # Re-read at the edge that paging by time moves: about one per page, by design.
    edge_rereads: int = 0
    events_rejected: Counter = field(default_factory=Counter)
    pages: int = 0
    requests: int = 0
    retries: Counter = field(default_factory=Counter)
    objects: list[str] = field(default_factory=list)
    watermark_ms: int | None = None
    lag_seconds: float | None = None
    stopped_by: str | None = None
    # Set once the run has returned: published, not needed, failed or not configured.
    continuation: str | None = None

    def fields(self) -> dict:
        fields = {
            "events_written": self.events_written,
            "duplicates_dropped": self.duplicates_dropped,
            "edge_rereads": self.edge_rereads,
            "events_rejected": dict(self.events_rejected),
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
        if self.continuation is not None:
            fields["continuation"] = self.continuation
        return fields


class Collector:
    """Everything a run needs that outlives it: configuration, bucket, clock, pacing."""

    def __init__(self, config: Config, *, bucket, clock: Clock):
        self.config = config
        self._bucket = bucket
        self._clock = clock
        self._pacer = Pacer(config.max_requests_per_minute, clock)
        self._endpoint = EndpointChoice()
        self.continuation = Continuation(config.trigger_topic, clock)

    def run(self) -> RunSummary:
        """One run. Safe to call from several threads at once: each run has its own state."""
        harness = HarnessClient.from_config(
            self.config, clock=self._clock, pacer=self._pacer, endpoint=self._endpoint
        )
        checkpoints = CheckpointStore(
            self._bucket,
            self.config.state_key,
            lease_seconds=self.config.max_run_seconds + LEASE_MARGIN_SECONDS,
        )
        sink = ObjectSink(
            self._bucket, prefix=self.config.prefix, output_format=str(self.config.output_format)
        )
        try:
            return _Run(self.config, harness, checkpoints, sink, self._clock).execute()
        finally:
            harness.close()


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
        self.overlap_ms = config.overlap_seconds * 1000
        self.deadline = Deadline(
            clock, config.max_run_seconds, write_reserve_seconds(config.max_run_seconds)
        )
        # The checkpoint as last written and its generation (set once the lease is ours).
        # ``window.position`` is where the written parts end, not how far paging has read.
        self.state = State()
        self.window: WindowProgress | None = None
        self.generation: int | None = None
        # How far paging has read: everything before it is written, or in ``part``.
        self.position: Position | None = None
        self.part = PartBuffer()
        self.pages_before = 0
        self.reported: set[str] = set()

    def execute(self) -> RunSummary:
        snapshot = self.checkpoints.load(self.clock.now_ms())
        now_ms = self.clock.now_ms()
        # Checked before any request to Harness: a second invocation touches nothing.
        self.checkpoints.ensure_free(snapshot.state, self.owner, now_ms)
        state = snapshot.state
        if state.origin == ORIGIN_GUIDE:
            state = adopt_guide_state(
                state, self.sink, overlap_ms=self.overlap_ms, now_ms=now_ms, deadline=self.deadline
            )
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
        self.state, self.window = state, window
        self.position = window.position
        self.pages_before = window.pages
        try:
            self._collect(snapshot)
        except CollectorError as failure:
            summary.stopped_by = summary.stopped_by or "failure"
            failure.summary = self._finish_summary()
            raise
        return self._finish_summary()

    def _collect(self, snapshot: Snapshot) -> None:
        try:
            if self.window.reread_parts:
                self._read_back_parts()
            while not self.position.done:
                start_ms, end_ms, cursor = self.position.request()
                page = self.harness.fetch(self._query(start_ms, end_ms), cursor, self.deadline)
                if self.generation is None:
                    self._acquire(snapshot)
                try:
                    step = read_page(self.position, page)
                except PagingInconsistent as exc:
                    raise HarnessInconsistent(
                        f"Harness sent a page that paging by time cannot trust: {exc}. Nothing "
                        "from it was written and the checkpoint stays before it; if this "
                        "persists, report it to Harness support"
                    ) from None
                self._take(step)
                self.summary.pages += 1
            self._write_part()
            self._complete()
        except DeadlineReached as reason:
            self.summary.stopped_by = "deadline"
            if self.generation is None:
                raise NoProgress(
                    f"MAX_RUN_SECONDS ran out before Harness answered a single page ({reason}; "
                    f"last failure: {self.harness.last_failure or 'none'}). Nothing changed; "
                    "the next run tries again"
                ) from None
            self._write_part()
            self._save(release=True)
        except (LeaseHeld, LeaseLost):
            raise
        except CollectorError:
            self._keep_what_was_fetched()
            raise
        except Exception as exc:
            self._keep_what_was_fetched()
            raise InternalError(
                f"unexpected {type(exc).__name__}: {str(exc)[:500]}. What was fetched before "
                "it is written and checkpointed; please report this"
            ) from None

    def _keep_what_was_fetched(self) -> None:
        """Write what was fetched, checkpoint, free the lease: the failure loses nothing."""
        if self.generation is None:
            return
        try:
            self._write_part()
            self._save(release=True)
        except CollectorError as secondary:
            log(logging.WARNING, "could not checkpoint after the failure", error=str(secondary))

    def _query(self, start_ms: int, end_ms: int) -> AuditQuery:
        config = self.config
        return AuditQuery(start_ms, end_ms, config.modules, config.actions, config.static_filter)

    def _acquire(self, snapshot: Snapshot) -> None:
        # The window is saved with the lease, so that a run taking over after a crash
        # resumes this very window and finds the parts already written.
        state = replace(self.state, window=self.window)
        self.state, self.generation = self.checkpoints.acquire(
            state, snapshot.generation, self.owner, self.clock.now_ms()
        )
        window = self.window
        log(
            logging.INFO,
            "run started",
            window_start=iso(window.start_ms),
            window_end=iso(window.end_ms),
            resumed=self.summary.resumed,
            next_part=window.next_part,
            checkpoint=self.checkpoints.uri,
        )

    def _read_back_parts(self) -> None:
        """A version 1 window is read again from its top: first learn what its parts hold."""
        window = self.window
        for part in range(1, window.next_part):
            if self.deadline.expired():
                raise DeadlineReached("reading back the window's parts")
            name = object_name(self.config.prefix, window.start_ms, window.end_ms, part)
            window.ahead.update(self.sink.read_ids(name))
        self.window = replace(window, reread_parts=False)

    def _known(self, audit_id: str) -> bool:
        window = self.window
        return (
            audit_id in self.state.delivered
            or audit_id in window.committed
            or audit_id in window.ahead
        )

    def _take(self, step: Step) -> None:
        """Add the page's new events to the part, writing it whenever it is full."""
        self._report(step)
        self.summary.edge_rereads += step.repeats
        limit = self.config.max_object_bytes
        index = 0
        try:
            for index, taken in enumerate(step.events):
                if self._known(taken.audit_id):
                    self.summary.duplicates_dropped += 1
                    continue
                try:
                    line = encode_line(self.layout(taken.event))
                except ValueError:
                    self._reject(NOT_JSON, 1, taken.audit_id)
                    continue
                if len(self.part) and self.part.size + len(line) + 1 > limit:
                    # Saved before this page: what it already put in parts is known when it
                    # is read again.
                    self.window.ahead.update((t.audit_id, t.timestamp) for t in step.events[:index])
                    self._write_part()
                    self._save()
                    if self._known(taken.audit_id):  # found in a part an earlier attempt wrote
                        self.summary.duplicates_dropped += 1
                        continue
                if len(line) + 1 > limit and "oversized" not in self.reported:
                    self.reported.add("oversized")  # once a run: a hostile page repeats
                    log(
                        logging.WARNING,
                        "an event larger than MAX_OBJECT_MB is written alone in its part",
                        audit_id=taken.audit_id,
                        bytes=len(line) + 1,
                    )
                self.part.add(line, taken.audit_id, taken.timestamp)
        except BaseException:
            # Checkpointed before this page: what it put in parts is known when re-read.
            self.window.ahead.update((t.audit_id, t.timestamp) for t in step.events[:index])
            raise
        self.position = step.position

    def _report(self, step: Step) -> None:
        for reason, count in step.rejected.items():
            self._reject(reason, count, step.rejected_sample)
        burst = step.burst_done
        if burst is not None:
            log(
                logging.WARNING,
                f"{burst.events} events share one millisecond; it was read alone",
                millisecond=iso(burst.ms),
                timestamp_ms=burst.ms,
                passes=burst.passes,
            )

    def _reject(self, reason: str, count: int, sample: str | None) -> None:
        self.summary.events_rejected[reason] += count
        if reason not in self.reported:  # once per reason and run: a hostile page repeats
            self.reported.add(reason)
            log(
                logging.WARNING,
                "items from Harness that cannot be trusted are not written",
                reason=reason,
                count=count,
                sample=sample,
            )

    def _write_part(self) -> None:
        """Write the part as the window's next part(s); the window's position becomes the
        run's. The checkpoint is the caller's to save."""
        part, position = self.part, self.position
        window = self.window
        number = window.next_part
        written = 0
        since_ms = window.end_ms - self.overlap_ms
        while len(part):
            name = object_name(self.config.prefix, window.start_ms, window.end_ms, number)
            uri = self.sink.uri(name)
            if self.sink.create(
                name, part, start_ms=window.start_ms, end_ms=window.end_ms, part=number
            ):
                window.committed.update(tail_ids(part.ids, since_ms))
                written += len(part)
                self.summary.objects.append(uri)
                log(logging.INFO, "wrote part", object=uri, events=len(part), part=number)
                number += 1
                break
            # An earlier attempt at this window wrote this part and died before its
            # checkpoint: deliver only what that part lacks, and remember what it holds.
            existing = self.sink.read_ids(name)
            window.ahead.update(existing)
            remaining = part.without(existing)
            self.summary.duplicates_dropped += len(part) - len(remaining)
            log(
                logging.WARNING,
                "part already written by an earlier attempt; skipping what it holds",
                object=uri,
                events_in_part=len(existing),
                events_it_lacks=len(remaining),
            )
            part = remaining
            number += 1
        self.summary.events_written += written
        self.part = PartBuffer()
        self.window = replace(
            window,
            position=position,
            next_part=number,
            pages=self.pages_before + self.summary.pages,
            events_written=window.events_written + written,
        )

    def _save(self, *, release: bool = False) -> None:
        now_ms = self.clock.now_ms()
        state = replace(self.state, window=self.window)
        if release:
            state = replace(state, lease=None)
        else:
            state = self.checkpoints.renewed(state, self.owner, now_ms)
        self.generation = self.checkpoints.save(state, self.generation, now_ms)
        self.state = state

    def _complete(self) -> None:
        done = complete_window(self.state, self.window, overlap_ms=self.overlap_ms)
        done = replace(done, lease=None)
        self.generation = self.checkpoints.save(done, self.generation, self.clock.now_ms())
        self.state = done
        self.summary.window_complete = True
        self.summary.stopped_by = "window complete"
        self.summary.watermark_ms = self.window.end_ms

    def _finish_summary(self) -> RunSummary:
        self.summary.requests = self.harness.requests
        self.summary.retries = Counter(self.harness.retries)
        if self.summary.watermark_ms is not None:
            lag = (self.clock.now_ms() - self.summary.watermark_ms) / 1000
            self.summary.lag_seconds = round(lag, 3)
        return self.summary
