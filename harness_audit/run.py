"""One run in a straight line: load the checkpoint, take the lease, read pages, write parts,
save, release. A part is written (create-only) before the checkpoint moves past its events:
a run resuming after a crash finds the parts beyond the checkpoint and writes what they lack.
"""

import enum
import logging
import uuid
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field, replace

from harness_audit.checkpoint import RESET_RECIPE, CheckpointStore, Snapshot
from harness_audit.clock import Clock, Deadline, iso
from harness_audit.config import Config
from harness_audit.errors import (
    CollectorError,
    DeadlineReached,
    HarnessInconsistent,
    InternalError,
    LeaseHeld,
    LeaseLost,
    NoProgress,
    StateMissing,
)
from harness_audit.harness_client import EndpointChoice, HarnessClient, Pacer
from harness_audit.layout import encode_line, layout_function
from harness_audit.listing import AuditQuery
from harness_audit.logs import log
from harness_audit.migration import adopt_guide_state
from harness_audit.paging import PagingInconsistent, Position, Step, read_page
from harness_audit.sink import ObjectSink, PartBuffer, object_name
from harness_audit.state import ORIGIN_GUIDE, State
from harness_audit.window import complete_window, plan_window, tail_ids


class Stopped(enum.Enum):
    """How a run ended; the values are the summary's ``stopped_by``."""

    COMPLETE = "window complete"
    DEADLINE = "deadline"
    FAILED = "failure"
    SKIPPED = "lease held"


@dataclass
class RunSummary:
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    resumed: bool = False
    events_written: int = 0
    duplicates_dropped: int = 0  # already delivered: in the overlap, or in a found part
    edge_rereads: int = 0  # re-read at paging's moving edge: about one per page, by design
    events_rejected: Counter = field(default_factory=Counter)
    pages: int = 0
    requests: int = 0
    retries: Counter = field(default_factory=Counter)
    objects: list[str] = field(default_factory=list)
    watermark_ms: int | None = None
    lag_seconds: float | None = None
    stopped: Stopped | None = None
    position_moved: bool = False  # the checkpoint saved reads less: a continuation pays
    continuation: str | None = None  # set by main once the run has returned

    @property
    def window_complete(self) -> bool:
        return self.stopped is Stopped.COMPLETE

    def fields(self) -> dict:
        """The summary as logged: times in ISO 8601, the continuation once it is decided."""
        renamed = ("window_start_ms", "window_end_ms", "watermark_ms", "stopped", "continuation")
        fields = {name: value for name, value in vars(self).items() if name not in renamed}
        times = {"window_start": self.window_start_ms, "window_end": self.window_end_ms}
        times["checkpoint"] = self.watermark_ms
        fields |= {name: iso(ms) if ms else None for name, ms in times.items()}
        fields["window_complete"] = self.window_complete
        fields["stopped_by"] = self.stopped.value if self.stopped else None
        return fields | ({"continuation": self.continuation} if self.continuation else {})


@dataclass(frozen=True)
class RunResult:
    """What a run returns, whatever happened: a failure is ``error``, never an exception."""

    summary: RunSummary
    error: CollectorError | None = None


def collector_error(exc: Exception) -> CollectorError:
    if isinstance(exc, CollectorError):
        return exc
    return InternalError(
        f"unexpected {type(exc).__name__}: {str(exc)[:500]}. The checkpoint keeps what was "
        "written before it; please report this"
    )


def fetch_step(harness: HarnessClient, config: Config, position: Position, deadline) -> Step:
    """The next page of ``position``'s range, in the configured filters, read."""
    start_ms, end_ms, cursor = position.request()
    query = AuditQuery(start_ms, end_ms, config.modules, config.actions, config.static_filter)
    try:
        return read_page(position, harness.fetch(query, cursor, deadline))
    except PagingInconsistent as exc:
        raise HarnessInconsistent(
            f"Harness sent a page for {iso(start_ms)} to {iso(end_ms)} that paging by time "
            f"cannot trust: {exc}. Nothing from it was written and no checkpoint moved past "
            "it; if this persists, report it to Harness support"
        ) from exc


class Collector:
    """Everything a run needs that outlives it: configuration, bucket, clock, pacing."""

    def __init__(self, config: Config, *, bucket, clock: Clock, pacer: Pacer):
        self.config, self._bucket, self._clock, self._pacer = config, bucket, clock, pacer
        self._endpoint = EndpointChoice()

    def run(self) -> RunResult:
        """One run. Safe to call from several threads at once: each run has its own state."""
        client = {"clock": self._clock, "pacer": self._pacer, "endpoint": self._endpoint}
        with closing(HarnessClient(self.config, **client)) as harness:
            return _Run(self.config, self._bucket, harness, self._clock).execute()


class _Run:
    def __init__(self, config: Config, bucket, harness: HarnessClient, clock: Clock):
        self.config, self.harness, self.clock = config, harness, clock
        self.deadline = Deadline.for_run(clock, config.max_run_seconds)
        self.checkpoints = CheckpointStore(config, bucket, self.deadline)
        self.sink = ObjectSink(bucket, prefix=config.prefix, output_format=config.output_format)
        self.owner = uuid.uuid4().hex
        self.summary = RunSummary()
        self.layout = layout_function(config.output_format)
        self.overlap_ms = config.overlap_seconds * 1000
        self.part = PartBuffer()
        self.reported: set[str] = set()
        self.saved: Snapshot | None = None  # _start sets it, and loaded, planned, window

    def execute(self) -> RunResult:
        try:
            self._start()
            stopped, error = self._collect()
            self._finish(stopped)
        except Exception as exc:
            stopped, error = Stopped.FAILED, collector_error(exc)
            # Released if taken, unless another run took it over: then not ours to write.
            if self.saved is not None and not isinstance(error, LeaseLost):
                self.checkpoints.release(self.saved, self.clock.now_ms())
        return self._result(stopped, error)

    def _start(self) -> None:
        """Load the checkpoint, plan the window, take the lease."""
        loaded = self.checkpoints.load(self.clock.now_ms())
        state, now_ms = loaded.state, self.clock.now_ms()
        # No checkpoint, yet data objects: starting afresh would write them again or leave a
        # gap. (take() checks the lease: neither a missing nor a guide's checkpoint has one.)
        seconds = self.deadline.storage_seconds()
        if loaded.generation == 0 and (found := self.sink.first_object(seconds=seconds)):
            uri = self.checkpoints.uri
            raise StateMissing(
                f"There is no checkpoint at {uri}, but {self.sink.uri(found)} shows that a "
                "collector ran before; starting afresh would write events twice or leave a "
                f"gap. To resume deliberately, write {RESET_RECIPE} to {uri}; to start "
                "afresh, move the objects out of GCS_PREFIX"
            )
        if state.origin == ORIGIN_GUIDE:
            state = adopt_guide_state(
                state, self.sink, overlap_ms=self.overlap_ms, now_ms=now_ms, deadline=self.deadline
            )
        lookback = self.config.start_minutes_back * 60_000
        window = plan_window(state, now_ms, overlap_ms=self.overlap_ms, first_lookback_ms=lookback)
        summary = self.summary
        summary.window_start_ms, summary.window_end_ms = window.start_ms, window.end_ms
        summary.resumed = state.window is not None
        # Delivered until the window completes: up to the last watermark (a first run: none).
        summary.watermark_ms = state.watermark_ms or window.start_ms
        self.loaded, self.planned, self.window = state, window, window
        # Saved with the lease: a run taking over after a crash resumes this very window.
        taking = Snapshot(replace(state, window=window), loaded.generation)
        self.saved = self.checkpoints.take(taking, self.owner, self.clock.now_ms())
        bounds = {"window_start": iso(window.start_ms), "window_end": iso(window.end_ms)}
        started = {"resumed": summary.resumed, "next_part": window.next_part}
        log(logging.INFO, "run started", **bounds, **started, checkpoint=self.checkpoints.uri)

    def _collect(self) -> tuple[Stopped, CollectorError | None]:
        """Page until the window is read, the deadline comes, or Harness fails. A Harness
        failure comes between pages, and is returned: what was read before it is kept."""
        while not self.window.position.done:
            try:
                step = fetch_step(self.harness, self.config, self.window.position, self.deadline)
            except DeadlineReached as reason:
                if self.summary.pages:
                    return Stopped.DEADLINE, None
                return Stopped.FAILED, NoProgress(
                    f"MAX_RUN_SECONDS ran out before Harness answered a single page ({reason}; "
                    f"last failure: {self.harness.last_failure or 'none'}). Nothing changed; "
                    "the next run tries again"
                )
            except CollectorError as failure:
                return Stopped.FAILED, failure
            self.summary.pages += 1
            self._take(step)
        return Stopped.COMPLETE, None

    def _known(self, audit_id: str) -> bool:
        known = (self.loaded.delivered, self.window.committed, self.window.ahead)
        return any(audit_id in ids for ids in known)

    def _take(self, step: Step) -> None:
        """Add the page's new events to the part. Parts end at page boundaries unless the page
        alone is larger than a part: then the checkpoint moves past it once all is written."""
        for reason, count in step.rejected.items():
            self._reject(reason, count, step.rejected_sample)
        if burst := step.burst_done:
            message = f"{burst.events} events share one millisecond; it was read alone"
            log(logging.WARNING, message, millisecond=iso(burst.ms), passes=burst.passes)
        self.summary.edge_rereads += step.repeats
        lines = [(line, taken) for taken in step.events if (line := self._line(taken))]
        limit = self.config.max_object_bytes
        if len(self.part) and self.part.size + sum(len(line) + 1 for line, _ in lines) > limit:
            self._write_part()
            self._save()
        next_part = self.window.next_part
        for line, taken in lines:
            if self._known(taken.audit_id):  # found in a part an earlier attempt wrote
                self.summary.duplicates_dropped += 1
                continue
            if len(self.part) and self.part.size + len(line) + 1 > limit:
                self._write_part()
            self.part.add(line, taken.audit_id, taken.timestamp)
        self.window = replace(self.window, position=step.position, pages=self.window.pages + 1)
        if self.window.next_part > next_part:  # the page alone was larger than a part
            self._write_part()
            self._save()

    def _line(self, taken) -> bytes | None:
        """The event's line, or None when it is delivered already or cannot be written."""
        if self._known(taken.audit_id):
            self.summary.duplicates_dropped += 1
            return None
        try:
            line = encode_line(self.layout(taken.event))
        except ValueError:
            self._reject("not_json", 1, taken.audit_id)  # NaN, Infinity, 1e400
            return None
        if len(line) + 1 > self.config.max_object_bytes and "oversized" not in self.reported:
            self.reported.add("oversized")  # once a run: a hostile page repeats
            message = "an event larger than MAX_OBJECT_MB is written alone in its part"
            log(logging.WARNING, message, audit_id=taken.audit_id, bytes=len(line) + 1)
        return line

    def _reject(self, reason: str, count: int, sample: str | None) -> None:
        self.summary.events_rejected[reason] += count
        if reason not in self.reported:  # once per reason and run: a hostile page repeats
            self.reported.add(reason)
            message = "items from Harness that cannot be trusted are not written"
            log(logging.WARNING, message, reason=reason, count=count, sample=sample)

    def _write_part(self) -> None:
        """Write the part, create-only. A part already there is an earlier attempt's that died
        before its checkpoint: what it holds is remembered, what it lacks goes in the next."""
        part, window, self.part = self.part, self.window, PartBuffer()
        number, written = window.next_part, 0
        committed, ahead = dict(window.committed), dict(window.ahead)
        while len(part):
            name = object_name(self.config.prefix, window.start_ms, window.end_ms, number)
            uri, seconds = self.sink.uri(name), self.deadline.storage_seconds()
            bounds = {"start_ms": window.start_ms, "end_ms": window.end_ms, "part": number}
            if self.sink.create(name, part, seconds=seconds, **bounds):
                committed.update(tail_ids(part.ids, window.end_ms - self.overlap_ms))
                written += len(part)
                self.summary.objects.append(uri)
                log(logging.INFO, "wrote part", object=uri, events=len(part), part=number)
                part = PartBuffer()
            else:
                existing = self.sink.read_ids(name, seconds=seconds)
                ahead.update(existing)
                remaining = part.without(existing)
                self.summary.duplicates_dropped += len(part) - len(remaining)
                counts = {"events_in_part": len(existing), "events_it_lacks": len(remaining)}
                message = "part already written by an earlier attempt; skipping what it holds"
                log(logging.WARNING, message, object=uri, **counts)
                part = remaining
            number += 1
        self.summary.events_written += written
        changes = {"next_part": number, "events_written": window.events_written + written}
        self.window = replace(window, **changes, committed=committed, ahead=ahead)

    def _save(self, state: State | None = None) -> None:
        """Save ``state``, by default the window as read with the lease renewed."""
        now_ms = self.clock.now_ms()
        if state is None:
            state = replace(self.saved.state, window=self.window)
            state = self.checkpoints.renewed(state, self.owner, now_ms)
        self.saved = Snapshot(state, self.checkpoints.save(state, self.saved.generation, now_ms))

    def _finish(self, stopped: Stopped) -> None:
        """Write what was read, then save with the lease released. A run that read nothing
        writes back the checkpoint it loaded."""
        self._write_part()
        if stopped is Stopped.COMPLETE:
            state = complete_window(self.saved.state, self.window, overlap_ms=self.overlap_ms)
        elif self.window == self.planned:
            state = self.loaded
        else:
            state = replace(self.saved.state, window=self.window)
        self._save(replace(state, lease=None))
        self.summary.watermark_ms = state.watermark_ms or self.summary.watermark_ms

    def _result(self, stopped: Stopped, error: CollectorError | None) -> RunResult:
        summary = self.summary
        summary.stopped = Stopped.SKIPPED if isinstance(error, LeaseHeld) else stopped
        summary.requests, summary.retries = self.harness.requests, self.harness.retries
        saved = self.saved and self.saved.state.window
        # Position does not compare the burst's cursor, which the checkpoint does not keep.
        summary.position_moved = summary.window_complete or (
            saved is not None and saved.position != self.planned.position
        )
        if summary.watermark_ms is not None:
            summary.lag_seconds = round((self.clock.now_ms() - summary.watermark_ms) / 1000, 3)
        return RunResult(summary, error)
