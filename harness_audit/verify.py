"""``verify``: compare Harness with the bucket, hour by hour, and optionally repair.

For each hour of ``[since, until)``:

- Harness: the events it lists for the hour, read with the collector's own pager
  (``paging``: by time, bursts read alone) and client (retries, MAX_REQUESTS_PER_MINUTE),
  with the collector's filters. Each hour has its own deadline, generous but bounded.
- The bucket: every line stamped in the hour, from every object that can hold one.

Which objects can hold an hour. A collector object is named after its window,
``<prefix>/<start date>/harness-audit-<start>-<end>-NNNN.jsonl``, and holds only events
stamped in ``[start, end]``; a window starts at most 366 days before any event it holds
(the first window reaches START_MINUTES_BACK, at most 365 days, back; later ones start at
the last watermark less OVERLAP_SECONDS, at most a day). So the date folders from
``since - 366 days`` to ``until``'s date are listed, in one listing bounded by name
(``start_offset``/``end_offset``: names only, about a thousand a request), and only the
objects whose window, parsed from the name, meets a checked hour are read: each once,
however many hours it covers, and only when the first hour it can hold comes up. Repair
objects are named after their hour the same way. Other objects under the prefix (the
guide's, written soon after their events) are read for the hours of their folder's date
and the day before.

Next to a live collector. Neither the lease nor the checkpoint is touched. Only what the
collector has finished is checked: up to the checkpoint's watermark less OVERLAP_SECONDS,
because the next run re-reads that overlap and delivers any late record stamped in it
itself (a repair there would be written a second time by that run); a window in progress
starts at that same point. Later hours are reported "in progress", neither counted nor
repaired; an hour the boundary splits is checked up to it.

``--repair`` writes the missing events into new create-only objects named after their
hour, ``<prefix>/YYYY/MM/DD/harness-audit-repair-<hour start>-<hour end>-NNNN.jsonl``, in
the configured layout with the usual metadata. Just before writing, the hour's folder is
listed again and any object new since it was read is read, so only ids still missing are
written; a name someone else created meanwhile (another ``--repair``) answers 412, and the
hour is read again before the next attempt. Duplicates are reported, never deleted.
"""

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TextIO

from harness_audit.checkpoint import LEASE_MARGIN_SECONDS, MAX_LOOKBACK_MS, CheckpointStore
from harness_audit.cli_common import EXIT_FOUND, EXIT_OK, UsageError, parse_time
from harness_audit.clock import Clock, Deadline, iso, utc
from harness_audit.config import Config
from harness_audit.errors import (
    DeadlineReached,
    HarnessInconsistent,
    HarnessUnavailable,
    StorageUnavailable,
)
from harness_audit.gcs import storage_errors
from harness_audit.harness_client import EndpointChoice, HarnessClient
from harness_audit.layout import encode_line, layout_function
from harness_audit.listing import AuditQuery
from harness_audit.pacing import Pacer
from harness_audit.paging import PagingInconsistent, Position, Taken, read_page
from harness_audit.sink import ObjectSink, PartBuffer, compact_stamp, line_identities
from harness_audit.state import State

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MAX_RANGE_DAYS = 31
# How long before an event the window holding it can have started: see the docstring.
MAX_WINDOW_MS = MAX_LOOKBACK_MS + DAY_MS
# Reading one hour from Harness: ample at any pace Harness allows, but bounded.
HOUR_DEADLINE_SECONDS = 900
MAX_NAMED = 20
REPAIR_ATTEMPTS = 5

_NAME = re.compile(
    r"harness-audit-(?P<repair>repair-)?(?P<start>\d{8}T\d{9}Z)-(?P<end>\d{8}T\d{9}Z)"
    r"-(?P<part>\d{4,})\.jsonl"
)
_FOLDER = re.compile(r"(\d{4})/(\d{2})/(\d{2})/")


@dataclass(frozen=True)
class Request:
    since_ms: int
    until_ms: int
    repair: bool = False
    json: bool = False


def request_from(args) -> Request:
    since = parse_time(args.since, "--since")
    until = parse_time(args.until, "--until")
    if since >= until:
        raise UsageError(
            f"--since {iso(since)} is not before --until {iso(until)}: the range is empty"
        )
    if until - since > MAX_RANGE_DAYS * DAY_MS and not args.force:
        days = (until - since) / DAY_MS
        raise UsageError(
            f"the range is {days:.1f} days, more than {MAX_RANGE_DAYS}: every hour costs at "
            "least one Harness request; check it in parts, or add --force"
        )
    return Request(since, until, repair=args.repair, json=args.json)


def repair_object_name(prefix: str, hour_start_ms: int, hour_end_ms: int, part: int) -> str:
    start, end = utc(hour_start_ms), utc(hour_end_ms)
    folder = f"{prefix}/" if prefix else ""
    return (
        f"{folder}{start:%Y/%m/%d}/harness-audit-repair-{compact_stamp(start)}-{compact_stamp(end)}"
        f"-{part:04d}.jsonl"
    )


def settled_until(state: State, overlap_ms: int) -> int | None:
    """Up to where the collector is done: nothing it will still write is stamped before it.
    None: it has not completed a window yet."""
    if state.watermark_ms is None:
        return None
    settled = state.watermark_ms - overlap_ms
    if state.window is not None:
        settled = min(settled, state.window.start_ms)
    return max(settled, 0)


# -- the bucket's side ---------------------------------------------------------------------


def _parse_compact(text: str) -> int:
    moment = datetime.strptime(text[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000 + int(text[15:18])


@dataclass(frozen=True)
class StoredObject:
    name: str
    generation: int | None
    start_ms: int | None  # the window (or repaired hour) in its name; None: not our name
    end_ms: int | None
    repair: bool
    part: int
    day: date | None  # its date folder

    def may_hold(self, start_ms: int, limit_ms: int) -> bool:
        """Whether it can hold an event stamped in ``[start_ms, limit_ms)``."""
        if self.start_ms is not None:
            return self.start_ms < limit_ms and self.end_ms >= start_ms
        if self.day is None:
            return False
        # Written soon after its events: they are stamped on its folder's day or the one before.
        first, last = utc(start_ms).date(), utc(limit_ms - 1).date()
        return first <= self.day and last >= self.day - timedelta(days=1)


def describe(name: str, generation: int | None, base: str) -> StoredObject:
    rest = name[len(base) :]
    day = None
    folder = _FOLDER.match(rest)
    if folder:
        try:
            day = date(*map(int, folder.groups()))
        except ValueError:
            day = None
    found = _NAME.fullmatch(rest.rsplit("/", 1)[-1])
    if found is None:
        return StoredObject(name, generation, None, None, False, 0, day)
    try:
        start, end = _parse_compact(found["start"]), _parse_compact(found["end"])
    except ValueError:
        return StoredObject(name, generation, None, None, False, 0, day)
    repair, part = bool(found["repair"]), int(found["part"])
    return StoredObject(name, generation, start, end, repair, part, day)


@dataclass(frozen=True)
class Line:
    audit_id: str
    timestamp: int
    name: str


_OURS = object()  # a repair object this run wrote: its lines are known without reading it


class BucketIndex:
    """The objects that can hold the checked range ``[lo, hi)``, each read once, their lines
    handed out hour by hour."""

    def __init__(self, bucket, prefix: str, lo_ms: int, hi_ms: int):
        self._bucket = bucket
        self._prefix = prefix
        self._base = f"{prefix}/" if prefix else ""
        self._lo, self._hi = lo_ms, hi_ms
        self._seen: dict[str, object] = {}  # name -> generation read (or _OURS)
        self._pending: list[StoredObject] = []  # candidates not read yet
        self._lines: defaultdict[int, list[Line]] = defaultdict(list)  # by hour
        self._done_before = lo_ms  # lines stamped before it were handed out already
        self._repair_parts: Counter = Counter()  # hour start -> highest repair part seen
        self.objects_listed = 0
        self.objects_read = 0

    def load(self) -> None:
        first = utc(max(0, self._lo - MAX_WINDOW_MS)).date()
        last = utc(self._hi - 1).date() + timedelta(days=1)
        for stored in self._list(first, last):
            self._add(stored)

    def _folder(self, day: date) -> str:
        return f"{self._base}{day:%Y/%m/%d}/"

    def _list(self, first: date, last: date) -> Iterator[StoredObject]:
        """Objects in the date folders from ``first`` to ``last``, in one bounded listing."""
        start, end = self._folder(first), self._folder(last + timedelta(days=1))
        with storage_errors("list the objects under the prefix", self._bucket.name):
            blobs = self._bucket.list_blobs(
                prefix=self._base or None, start_offset=start, end_offset=end
            )
            for blob in blobs:
                if start <= blob.name < end:
                    self.objects_listed += 1
                    yield describe(blob.name, blob.generation, self._base)

    def _add(self, stored: StoredObject) -> str | None:
        """Note a listed object; the name of an object read before in another version."""
        if stored.repair:
            hour = stored.start_ms
            self._repair_parts[hour] = max(self._repair_parts[hour], stored.part)
        before = self._seen.get(stored.name)
        if before is _OURS or (before is not None and before == stored.generation):
            return None
        self._seen[stored.name] = stored.generation
        if stored.may_hold(self._lo, self._hi):
            self._pending.append(stored)
        if before is not None:  # rewritten since it was read: its old lines are void
            for lines in self._lines.values():
                lines[:] = [line for line in lines if line.name != stored.name]
            return stored.name
        return None

    def lines(self, start_ms: int, limit_ms: int) -> list[Line]:
        """The lines stamped in ``[start_ms, limit_ms)``, one hour at most, in increasing
        order of hours: every object that can hold one is read first."""
        self._done_before = max(self._done_before, start_ms)
        keep = []
        for stored in self._pending:
            if stored.may_hold(start_ms, limit_ms):
                self._read(stored)
            else:
                keep.append(stored)
        self._pending = keep
        lines = self._lines.pop(start_ms - start_ms % HOUR_MS, [])
        return [line for line in lines if start_ms <= line.timestamp < limit_ms]

    def _read(self, stored: StoredObject) -> None:
        blob = self._bucket.blob(stored.name, generation=stored.generation)
        with storage_errors(f"read {stored.name}", self._bucket.name):
            data = blob.download_as_bytes()
        self.objects_read += 1
        for audit_id, timestamp in line_identities(data, fallback_ms=-1):
            if self._done_before <= timestamp < self._hi:
                hour = timestamp - timestamp % HOUR_MS
                self._lines[hour].append(Line(audit_id, timestamp, stored.name))

    def refresh(self, start_ms: int, limit_ms: int) -> tuple[list[Line], set[str]]:
        """Just before a repair: objects created in the hour's folder since it was read
        (repairs by someone else). Their lines in ``[start_ms, limit_ms)``, and the names
        of objects rewritten since they were read."""
        day = utc(start_ms).date()
        replaced = {name for stored in self._list(day, day) if (name := self._add(stored))}
        return self.lines(start_ms, limit_ms), replaced

    def next_repair_part(self, hour_ms: int) -> int:
        return self._repair_parts[hour_ms] + 1

    def note_written(self, name: str, hour_ms: int, part: int) -> None:
        self._seen[name] = _OURS
        self._repair_parts[hour_ms] = max(self._repair_parts[hour_ms], part)


# -- the report ----------------------------------------------------------------------------


@dataclass
class Hour:
    start_ms: int  # the row: this hour within [since, until)
    end_ms: int
    checked_until_ms: int | None = None  # None: in progress
    in_harness: int = 0
    in_bucket: int = 0
    missing: list[str] = field(default_factory=list)  # as first found
    still_missing: list[str] = field(default_factory=list)
    duplicated: dict[str, list[str]] = field(default_factory=dict)  # id -> object names
    only_in_bucket: int = 0
    repaired: int = 0
    repair_objects: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.checked_until_ms is None:
            return "in_progress"
        return "partial" if self.checked_until_ms < self.end_ms else "checked"

    def duplicate_objects(self) -> list[str]:
        return sorted({name for names in self.duplicated.values() for name in names})


def plan_hours(since_ms: int, until_ms: int, settled_ms: int | None) -> list[Hour]:
    hours = []
    hour = since_ms - since_ms % HOUR_MS
    while hour < until_ms:
        row = Hour(max(since_ms, hour), min(until_ms, hour + HOUR_MS))
        if settled_ms is not None and settled_ms > row.start_ms:
            row.checked_until_ms = min(row.end_ms, settled_ms)
        hours.append(row)
        hour += HOUR_MS
    return hours


def _label(ms: int) -> str:
    moment = utc(ms)
    if moment.second == 0 and moment.microsecond == 0:
        return f"{moment:%Y-%m-%dT%H:%M}Z"
    return iso(ms)


class _Report:
    COLUMNS = ("in Harness", "in bucket", "missing", "duplicated")

    def __init__(self, out: TextIO, as_json: bool, uri: str):
        self._out = out
        self._json = as_json
        self._uri = uri

    def _write(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def header(self, request: Request, state: State, settled_ms: int | None, overlap_s: int):
        if self._json:
            return
        if settled_ms is None:
            basis = "nothing yet: the collector has not completed a window"
        else:
            basis = (
                f"{iso(settled_ms)} (watermark {iso(state.watermark_ms)} less "
                f"OVERLAP_SECONDS={overlap_s}; later events are still the collector's to write)"
            )
        self._write(f"Harness against {self._uri}, checked up to {basis}")
        widths = "".join(f"{name:>12}" for name in self.COLUMNS)
        self._write(f"{'hour (UTC)':<18}{widths}")

    def hour(self, row: Hour) -> None:
        if self._json:
            self._write(json.dumps(_hour_json(row)))
            return
        if row.state == "in_progress":
            self._write(f"{_label(row.start_ms):<18}" + f"{'-':>12}" * 4 + "  in progress")
            return
        counts = (row.in_harness, row.in_bucket, len(row.missing), len(row.duplicated))
        notes = []
        if row.state == "partial":
            notes.append(f"checked to {iso(row.checked_until_ms)}, the rest in progress")
        if row.repaired:
            notes.append(f"repaired {row.repaired}")
        if row.only_in_bucket:
            notes.append(f"{row.only_in_bucket} not listed by Harness")
        text = f"{_label(row.start_ms):<18}" + "".join(f"{count:>12}" for count in counts)
        self._write(text + (f"  {'; '.join(notes)}" if notes else ""))

    def summary(self, summary: dict) -> None:
        if self._json:
            self._write(json.dumps({"summary": summary}))
            return
        counts = (
            summary["in_harness"],
            summary["in_bucket"],
            summary["missing"],
            summary["duplicated"],
        )
        notes = []
        if summary["hours_in_progress"]:
            count = summary["hours_in_progress"]
            notes.append(f"{count} hour{'s' if count > 1 else ''} in progress")
        if summary["repaired"]:
            notes.append(f"repaired {summary['repaired']}")
        self._write(
            f"{'total':<18}"
            + "".join(f"{count:>12}" for count in counts)
            + (f"  {'; '.join(notes)}" if notes else "")
        )
        for name in summary["repair_objects"]:
            self._write(f"wrote {name}")
        still = summary["still_missing"]
        if still:
            shown = summary["missing_ids"]
            more = f" (and {still - len(shown)} more)" if still > len(shown) else ""
            self._write(f"missing {still}: {', '.join(shown)}{more}")
            if not summary["repaired"]:
                self._write("run again with --repair to write them")
        if summary["duplicate_objects"]:
            self._write(
                f"duplicated {summary['duplicated']} ids, held by: "
                + ", ".join(summary["duplicate_objects"])
            )
        if summary["exit_code"] == EXIT_OK:
            self._write("OK: nothing missing or duplicated in the hours checked")


def _hour_json(row: Hour) -> dict:
    document = {
        "hour": iso(row.start_ms - row.start_ms % HOUR_MS),
        "start": iso(row.start_ms),
        "end": iso(row.end_ms),
        "state": row.state,
    }
    if row.checked_until_ms is None:
        return document
    document.update(
        checked_until=iso(row.checked_until_ms),
        in_harness=row.in_harness,
        in_bucket=row.in_bucket,
        missing=len(row.missing),
        duplicated=len(row.duplicated),
        only_in_bucket=row.only_in_bucket,
        repaired=row.repaired,
        still_missing=len(row.still_missing),
        missing_ids=row.still_missing[:MAX_NAMED],
        duplicate_objects=row.duplicate_objects(),
        repair_objects=row.repair_objects,
    )
    return document


# -- the run -------------------------------------------------------------------------------


class _Verifier:
    def __init__(self, config: Config, bucket, clock: Clock, request: Request, out: TextIO):
        self.config = config
        self.bucket = bucket
        self.clock = clock
        self.request = request
        self.harness = HarnessClient.from_config(
            config,
            clock=clock,
            pacer=Pacer(config.max_requests_per_minute, clock),
            endpoint=EndpointChoice(),
        )
        self.sink = ObjectSink(
            bucket, prefix=config.prefix, output_format=str(config.output_format)
        )
        self.layout = layout_function(config.output_format)
        base = f"gs://{bucket.name}/{config.prefix}" if config.prefix else f"gs://{bucket.name}"
        self.report = _Report(out, request.json, base)
        self.index: BucketIndex | None = None

    def run(self) -> int:
        config = self.config
        checkpoints = CheckpointStore(
            self.bucket,
            config.state_key,
            lease_seconds=config.max_run_seconds + LEASE_MARGIN_SECONDS,
        )
        state = checkpoints.load(self.clock.now_ms()).state
        settled = settled_until(state, config.overlap_seconds * 1000)
        hours = plan_hours(self.request.since_ms, self.request.until_ms, settled)
        checked = [row for row in hours if row.checked_until_ms is not None]
        if checked:
            self.index = BucketIndex(
                self.bucket, config.prefix, checked[0].start_ms, checked[-1].checked_until_ms
            )
            self.index.load()
        self.report.header(self.request, state, settled, config.overlap_seconds)
        for row in hours:
            if row.checked_until_ms is not None:
                self._check(row)
            self.report.hour(row)
        summary = self._summary(hours, state, settled)
        self.report.summary(summary)
        return summary["exit_code"]

    def _check(self, row: Hour) -> None:
        listed = self._harness_events(row.start_ms, row.checked_until_ms)
        lines = self.index.lines(row.start_ms, row.checked_until_ms)
        present = {line.audit_id for line in lines}
        row.in_harness = len(listed)
        row.in_bucket = len(present)
        row.missing = sorted(audit_id for audit_id in listed if audit_id not in present)
        if row.missing and self.request.repair:
            lines = self._repair(row, listed, lines)
            present = {line.audit_id for line in lines}
        row.still_missing = sorted(audit_id for audit_id in listed if audit_id not in present)
        row.only_in_bucket = len(present - listed.keys())
        counts = Counter(line.audit_id for line in lines)
        holders = defaultdict(set)
        for line in lines:
            if counts[line.audit_id] > 1:
                holders[line.audit_id].add(self.sink.uri(line.name))
        row.duplicated = {audit_id: sorted(names) for audit_id, names in holders.items()}

    def _harness_events(self, start_ms: int, limit_ms: int) -> dict[str, Taken]:
        """Every event Harness lists stamped in ``[start_ms, limit_ms)``, by auditId."""
        config = self.config
        deadline = Deadline(self.clock, HOUR_DEADLINE_SECONDS, 0)
        position = Position(start_ms, limit_ms - 1)
        events: dict[str, Taken] = {}
        try:
            while not position.done:
                low, high, cursor = position.request()
                query = AuditQuery(low, high, config.modules, config.actions, config.static_filter)
                page = self.harness.fetch(query, cursor, deadline)
                step = read_page(position, page)
                for taken in step.events:
                    events.setdefault(taken.audit_id, taken)
                position = step.position
        except PagingInconsistent as exc:
            raise HarnessInconsistent(
                f"Harness sent a page for {iso(start_ms)} that paging by time cannot trust: "
                f"{exc}. Try again later"
            ) from None
        except DeadlineReached:
            raise HarnessUnavailable(
                f"Harness did not list the hour from {iso(start_ms)} within "
                f"{HOUR_DEADLINE_SECONDS} s (last failure: {self.harness.last_failure or 'none'})"
                "; try again later"
            ) from None
        return events

    def _repair(self, row: Hour, listed: dict[str, Taken], lines: list[Line]) -> list[Line]:
        """Write what is still missing from the hour; the hour's lines afterwards."""
        hour = row.start_ms - row.start_ms % HOUR_MS
        hour_end = hour + HOUR_MS
        for _ in range(REPAIR_ATTEMPTS):
            fresh, replaced = self.index.refresh(row.start_ms, row.checked_until_ms)
            lines = [line for line in lines if line.name not in replaced] + fresh
            present = {line.audit_id for line in lines}
            todo = [taken for audit_id, taken in listed.items() if audit_id not in present]
            if not todo:
                return lines
            number = self.index.next_repair_part(hour)
            for buffer in self._parts(todo):
                name = repair_object_name(self.config.prefix, hour, hour_end, number)
                if not self.sink.create(name, buffer, start_ms=hour, end_ms=hour_end, part=number):
                    break  # someone else created it meanwhile: read the hour again
                self.index.note_written(name, hour, number)
                row.repaired += len(buffer)
                row.repair_objects.append(self.sink.uri(name))
                lines += [Line(audit_id, ts, name) for audit_id, ts in buffer.ids]
                number += 1
            else:
                return lines
        raise StorageUnavailable(
            f"repair objects for {iso(hour)} kept being created by someone else; run again"
        )

    def _parts(self, todo: list[Taken]) -> Iterator[PartBuffer]:
        """The events as lines in the configured layout, in parts of at most MAX_OBJECT_MB."""
        limit = self.config.max_object_bytes
        part = PartBuffer()
        for taken in sorted(todo, key=lambda item: (item.timestamp, item.audit_id)):
            try:
                line = encode_line(self.layout(taken.event))
            except ValueError:
                continue  # a number JSON cannot carry: the collector does not write it either
            if len(part) and part.size + len(line) + 1 > limit:
                yield part
                part = PartBuffer()
            part.add(line, taken.audit_id, taken.timestamp)
        if len(part):
            yield part

    def _summary(self, hours: list[Hour], state: State, settled: int | None) -> dict:
        checked = [row for row in hours if row.checked_until_ms is not None]
        still = [audit_id for row in checked for audit_id in row.still_missing]
        duplicate_objects = sorted({name for row in checked for name in row.duplicate_objects()})
        duplicated = sum(len(row.duplicated) for row in checked)
        found = bool(still) or duplicated > 0
        return {
            "since": iso(self.request.since_ms),
            "until": iso(self.request.until_ms),
            "watermark": iso(state.watermark_ms) if state.watermark_ms is not None else None,
            "checked_until": iso(min(settled, self.request.until_ms)) if checked else None,
            "hours_checked": len(checked),
            "hours_in_progress": len(hours) - len(checked),
            "in_harness": sum(row.in_harness for row in checked),
            "in_bucket": sum(row.in_bucket for row in checked),
            "missing": sum(len(row.missing) for row in checked),
            "duplicated": duplicated,
            "only_in_bucket": sum(row.only_in_bucket for row in checked),
            "repaired": sum(row.repaired for row in checked),
            "still_missing": len(still),
            "missing_ids": still[:MAX_NAMED],
            "duplicate_objects": duplicate_objects,
            "repair_objects": [name for row in checked for name in row.repair_objects],
            "objects_read": self.index.objects_read if self.index else 0,
            "harness_requests": self.harness.requests,
            "exit_code": EXIT_FOUND if found else EXIT_OK,
        }


def run(config: Config, bucket, clock: Clock, request: Request, out: TextIO) -> int:
    verifier = _Verifier(config, bucket, clock, request, out)
    try:
        return verifier.run()
    finally:
        verifier.harness.close()
