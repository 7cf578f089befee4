"""``verify``: compare Harness with the bucket hour by hour up to the collector's watermark
less OVERLAP_SECONDS, optionally repair; then report. Nothing checked is a problem (a wrong
STATE_KEY would otherwise pass forever); a repair is create-only and a name taken first is
reported, not retried; duplicates are reported, never deleted."""

import contextlib
import json
import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import count
from typing import TextIO

from harness_audit.checkpoint import MAX_LOOKBACK_MS, CheckpointStore
from harness_audit.cli_common import EXIT_FAILED, EXIT_FOUND, EXIT_OK, UsageError, parse_time
from harness_audit.clock import Clock, Deadline, iso, utc
from harness_audit.config import Config
from harness_audit.errors import DeadlineReached, HarnessInconsistent
from harness_audit.gcs import storage_errors
from harness_audit.harness_client import HarnessClient, Pacer
from harness_audit.layout import encode_line, layout_function
from harness_audit.paging import Position, Taken, Unplaceable
from harness_audit.run import fetch_step
from harness_audit.sink import ObjectSink, PartBuffer, folder, line_identities, object_name
from harness_audit.state import ORIGIN_GUIDE, State

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MAX_RANGE_DAYS = 31
MAX_WINDOW_MS = MAX_LOOKBACK_MS + DAY_MS
# The CLI's budget per hour of the range: ample at any pace Harness allows, but bounded.
HOUR_DEADLINE_SECONDS = 900
MAX_NAMED = 20
# What an hour's row and the totals count, in the order the JSON gives them.
COUNTS = ("in_harness", "in_bucket", "missing", "still_missing", "duplicated", "repaired")
COLUMNS = {"in_harness": "in Harness", "in_bucket": "in bucket", "missing": "missing"}
COLUMNS |= {"duplicated": "duplicated"}
_NAME = re.compile(r"harness-audit-(?:repair-)?(\d{8}T\d{9}Z)-(\d{8}T\d{9}Z)-\d{4,}\.jsonl")


@dataclass(frozen=True)
class Request:
    since_ms: int
    until_ms: int
    repair: bool = False
    json: bool = False


def request_from(args) -> Request:
    """The command line's range, checked, in milliseconds."""
    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    if since >= until:
        raise UsageError(f"--since {iso(since)} is not before --until {iso(until)}: empty range")
    if until - since > MAX_RANGE_DAYS * DAY_MS and not args.force:
        raise UsageError(
            f"the range is {(until - since) / DAY_MS:.1f} days, more than {MAX_RANGE_DAYS}: "
            "every hour costs at least one Harness request; check it in parts, or add --force"
        )
    return Request(since, until, repair=args.repair, json=args.json)


def repair_object_name(prefix: str, hour_ms: int, part: int) -> str:
    """The sink's name for the hour's window, marked as a repair."""
    name = object_name(prefix, hour_ms, hour_ms + HOUR_MS, part)
    return "harness-audit-repair-".join(name.rsplit("harness-audit-", 1))


def settled_until(state: State, overlap_ms: int) -> int | None:
    """Up to where the collector is done; None before its first window completes."""
    if state.watermark_ms is None:
        return None
    window_start = state.window.start_ms if state.window else state.watermark_ms
    return max(min(state.watermark_ms - overlap_ms, window_start), 0)


@dataclass(frozen=True)
class HourResult:
    start_ms: int
    end_ms: int
    checked_until_ms: int | None = None  # None: in progress (or not reached by the deadline)
    in_harness: int = 0
    in_bucket: int = 0
    still_missing: tuple[str, ...] = ()  # after any repair
    unplaceable: int = 0  # listed without a usable timestamp: missing, and never repairable
    duplicated: tuple[tuple[str, tuple[str, ...]], ...] = ()  # id, the objects holding it
    repaired: int = 0
    repair_objects: tuple[str, ...] = ()
    conflict: str | None = None  # a repair name another writer created first

    hour_ms = property(lambda self: self.start_ms - self.start_ms % HOUR_MS)

    @property
    def state(self) -> str:
        if self.checked_until_ms is None:
            return "in_progress"
        return "partial" if self.checked_until_ms < self.end_ms else "checked"

    def counts(self) -> dict[str, int]:
        unresolved = len(self.still_missing) + self.unplaceable
        missing, duplicated = unresolved + self.repaired, len(self.duplicated)
        values = (self.in_harness, self.in_bucket, missing, unresolved, duplicated, self.repaired)
        return dict(zip(COUNTS, values, strict=True))


@dataclass(frozen=True)
class VerifyResult:
    since_ms: int
    until_ms: int
    watermark_ms: int | None
    settled_ms: int | None
    hours: tuple[HourResult, ...]
    cut_short: bool = False  # the deadline came before every settled hour was checked
    objects_read: int = 0
    harness_requests: int = 0

    @property
    def totals(self) -> dict[str, int]:
        """Each of COUNTS summed over the hours."""
        return {name: sum(hour.counts()[name] for hour in self.hours) for name in COUNTS}

    in_harness = property(lambda self: self.totals["in_harness"])
    in_bucket = property(lambda self: self.totals["in_bucket"])
    missing = property(lambda self: self.totals["missing"])
    still_missing = property(lambda self: self.totals["still_missing"])
    duplicated = property(lambda self: self.totals["duplicated"])
    repaired = property(lambda self: self.totals["repaired"])

    def _all(self, name: str) -> list:
        return [item for hour in self.hours for item in getattr(hour, name)]

    hours_checked = property(lambda self: sum(h.state != "in_progress" for h in self.hours))
    checked = property(lambda self: self.hours_checked > 0)
    missing_ids = property(lambda self: tuple(self._all("still_missing")[:MAX_NAMED]))
    conflicts = property(lambda self: [h.conflict for h in self.hours if h.conflict])
    found = property(lambda self: bool(self.still_missing or self.duplicated or self.conflicts))

    @property
    def problem(self) -> str | None:
        if self.cut_short:
            return "cut short by the deadline"
        if not self.checked:
            return "nothing checked"
        return "found" if self.found else None


def plan_hours(since_ms: int, until_ms: int, settled_ms: int | None) -> list[HourResult]:
    hours = []
    for hour in range(since_ms - since_ms % HOUR_MS, until_ms, HOUR_MS):
        start, end = max(since_ms, hour), min(until_ms, hour + HOUR_MS)
        checked = min(end, settled_ms) if settled_ms is not None and settled_ms > start else None
        hours.append(HourResult(start, end, checked))
    return hours


def may_hold(name: str, lo_ms: int, hi_ms: int) -> bool:
    """Whether an object (named under the prefix) may hold events of [lo_ms, hi_ms): ours by the
    window in its name; another writer's (the guide's) by its folder's date and the day before."""
    if found := _NAME.fullmatch(name.rsplit("/", 1)[-1]):
        with contextlib.suppress(ValueError):  # not a time in it: not one of ours
            start, end = (datetime.strptime(stamp, "%Y%m%dT%H%M%S%f%z") for stamp in found.groups())
            return start < utc(hi_ms) and end >= utc(lo_ms)
    return f"{utc(lo_ms):%Y/%m/%d}/" <= name[:11] <= f"{utc(hi_ms - 1 + DAY_MS):%Y/%m/%d}/"


def bucket_lines(sink: ObjectSink, lo_ms: int, hi_ms: int) -> tuple[dict, set[str], int]:
    """By hour, each auditId stamped in ``[lo_ms, hi_ms)`` with the object (URI) of each of its
    lines; the names listed; how many objects were read (each once)."""
    bucket, base = sink.bucket, folder(sink.prefix)
    first = f"{base}{utc(max(0, lo_ms - MAX_WINDOW_MS)):%Y/%m/%d}/"
    last = f"{base}{utc(hi_ms - 1 + 2 * DAY_MS):%Y/%m/%d}/"
    with storage_errors("list the objects under the prefix", bucket.name):
        listing = bucket.list_blobs(prefix=base or None, start_offset=first, end_offset=last)
        names = [blob.name for blob in listing if first <= blob.name < last]
    by_hour = defaultdict(lambda: defaultdict(list))
    held = [name for name in names if may_hold(name[len(base) :], lo_ms, hi_ms)]
    for name in held:
        with storage_errors(f"read {name}", bucket.name):
            data, uri = bucket.blob(name).download_as_bytes(), sink.uri(name)
        for audit_id, timestamp in line_identities(data, fallback_ms=-1):
            if lo_ms <= timestamp < hi_ms:
                by_hour[timestamp - timestamp % HOUR_MS][audit_id].append(uri)
    return by_hour, set(names), len(held)


def _check(harness, config: Config, row: HourResult, held: dict, deadline) -> tuple:
    """The hour as checked, and Harness's events in its checked range by auditId. One without
    a usable time counts as missing, so the hour is never "OK"."""
    position, listed, unplaceable = Position(row.start_ms, row.checked_until_ms - 1), {}, 0
    try:
        while not position.done:
            step = fetch_step(harness, config, position, deadline)
            for taken in step.events:
                listed.setdefault(taken.audit_id, taken)
            position = step.position
    except HarnessInconsistent as exc:
        if not isinstance(exc.__cause__, Unplaceable):
            raise
        unplaceable = 1
    missing = tuple(sorted(key for key in listed if key not in held))
    twice = sorted(key for key, uris in held.items() if len(uris) > 1)
    duplicated = tuple((key, tuple(sorted(set(held[key])))) for key in twice)
    counted = {"in_harness": len(listed), "in_bucket": len(held), "unplaceable": unplaceable}
    return replace(row, **counted, still_missing=missing, duplicated=duplicated), listed


def repair_parts(todo: list[Taken], config: Config) -> Iterator[PartBuffer]:
    """The events as lines in the configured layout, in parts of at most MAX_OBJECT_MB."""
    layout, part = layout_function(config.output_format), PartBuffer()
    for taken in sorted(todo, key=lambda item: (item.timestamp, item.audit_id)):
        try:
            line = encode_line(layout(taken.event))
        except ValueError:
            continue  # a number JSON cannot carry: the collector does not write it either
        if len(part) and part.size + len(line) + 1 > config.max_object_bytes:
            yield part
            part = PartBuffer()
        part.add(line, taken.audit_id, taken.timestamp)
    if len(part):
        yield part


def _repair(row: HourResult, listed: dict, sink: ObjectSink, config, names: set) -> HourResult:
    """Write what is missing into the hour's next repair objects; a name taken first stops it."""
    hour, written, repaired = row.hour_ms, [], set()
    first = next(n for n in count(1) if repair_object_name(config.prefix, hour, n) not in names)
    todo = [listed[key] for key in row.still_missing]
    for number, buffer in enumerate(repair_parts(todo, config), start=first):
        name = repair_object_name(config.prefix, hour, number)
        if not sink.create(name, buffer, start_ms=hour, end_ms=hour + HOUR_MS, part=number):
            row = replace(row, conflict=sink.uri(name))
            break
        written.append(sink.uri(name))
        repaired.update(audit_id for audit_id, _ in buffer.ids)
    still = tuple(key for key in row.still_missing if key not in repaired)
    return replace(row, still_missing=still, repaired=len(repaired), repair_objects=tuple(written))


def verify_range(
    config: Config, bucket, clock: Clock, since_ms, until_ms, *, repair, deadline, pacer=None
) -> VerifyResult:
    """Check (and with ``repair``, complete) ``[since_ms, until_ms)``; never touches the
    checkpoint or the lease. Stops at ``deadline`` with ``cut_short``; paced by ``pacer``."""
    state = CheckpointStore(config, bucket).load(clock.now_ms()).state
    settled = settled_until(state, config.overlap_seconds * 1000)
    hours = plan_hours(since_ms, until_ms, settled)
    result = VerifyResult(since_ms, until_ms, state.watermark_ms, settled, tuple(hours))
    # The hours up to ``settled``: a prefix, of which only the last can be partial.
    todo = [row for row in hours if row.checked_until_ms is not None]
    if not todo:
        return result
    sink = ObjectSink(bucket, prefix=config.prefix, output_format=str(config.output_format))
    stored, names, objects_read = bucket_lines(sink, todo[0].start_ms, todo[-1].checked_until_ms)
    pacer = pacer or Pacer(config.max_requests_per_minute, clock)
    harness = HarnessClient(config, clock=clock, pacer=pacer)
    checked = []
    with contextlib.closing(harness):
        for row in todo:
            try:
                row, listed = _check(harness, config, row, stored[row.hour_ms], deadline)
            except DeadlineReached:
                break
            checked.append(_repair(row, listed, sink, config, names) if repair else row)
    rest = [replace(row, checked_until_ms=None) for row in hours[len(checked) :]]
    done = {"cut_short": len(checked) < len(todo), "harness_requests": harness.requests}
    return replace(result, hours=(*checked, *rest), objects_read=objects_read, **done)


def verify_scheduled(config, bucket, clock: Clock, pacer: Pacer) -> VerifyResult:
    """``command=verify``: the last settled day from a whole hour (daily runs leave no gap),
    repaired with VERIFY_REPAIR, under the lease: never paging Harness alongside the collector
    (LeaseHeld if another run holds it). What MAX_RUN_SECONDS leaves is reported, not continued."""
    deadline = Deadline.for_run(clock, config.max_run_seconds)
    store = CheckpointStore(config, bucket, deadline)
    loaded = store.load(clock.now_ms())
    settled = settled_until(loaded.state, config.overlap_seconds * 1000)
    ours = settled is not None and loaded.state.origin != ORIGIN_GUIDE
    until = settled if ours else clock.now_ms()
    since = until - DAY_MS - (until - DAY_MS) % HOUR_MS
    if not ours:  # no checkpoint (so no watermark), or not ours: nothing to lease or check
        hours = tuple(plan_hours(since, until, None))
        return VerifyResult(since, until, loaded.state.watermark_ms, None, hours)
    taken = store.take(loaded, f"verify-{uuid.uuid4().hex}", clock.now_ms())
    try:
        options = {"repair": config.verify_repair, "deadline": deadline, "pacer": pacer}
        return verify_range(config, bucket, clock, since, until, **options)
    finally:  # the state as loaded: only the lease was ours to write
        store.release(taken, clock.now_ms())


def _hour_json(row: HourResult) -> dict:
    hour = {"hour": iso(row.hour_ms), "start": iso(row.start_ms)}
    hour |= {"end": iso(row.end_ms), "state": row.state}
    if row.checked_until_ms is None:
        return hour
    return hour | {"checked_until": iso(row.checked_until_ms)} | row.counts()


def summary_of(result: VerifyResult) -> dict:
    """The result as the CLI's --json summary and the function's log line."""
    return {
        "since": iso(result.since_ms),
        "until": iso(result.until_ms),
        "watermark": None if result.watermark_ms is None else iso(result.watermark_ms),
        "checked_until": iso(min(result.settled_ms, result.until_ms)) if result.checked else None,
        "checked": result.checked,
        "cut_short": result.cut_short,
        "hours_checked": result.hours_checked,
        "hours_in_progress": len(result.hours) - result.hours_checked,
        **result.totals,
        "missing_ids": list(result.missing_ids),
        "duplicate_objects": sorted({n for _, names in result._all("duplicated") for n in names}),
        "repair_objects": result._all("repair_objects"),
        "repair_conflicts": result.conflicts,
        "objects_read": result.objects_read,
        "harness_requests": result.harness_requests,
    }


def _line(label: str, counts: dict, notes: list[str]) -> str:
    columns = "".join(f"{counts[name]:>12}" for name in COLUMNS)
    return f"{label:<18}{columns}" + ("  " + "; ".join(notes) if notes else "")


def report_text(result: VerifyResult, summary: dict, uri: str, overlap_s: int) -> list[str]:
    basis = "nothing yet: the collector has not completed a window"
    if result.settled_ms is not None:
        basis = (
            f"{iso(result.settled_ms)} (watermark {iso(result.watermark_ms)} less OVERLAP_SECONDS="
            f"{overlap_s}; later events are still the collector's to write)"
        )
    lines = [f"Harness against {uri}, checked up to {basis}", _line("hour (UTC)", COLUMNS, [])]
    for row in result.hours:
        label = iso(row.start_ms).replace(":00.000Z", "Z")  # to the minute, when it is one
        if row.checked_until_ms is None:
            lines.append(_line(label, dict.fromkeys(COLUMNS, "-"), ["in progress"]))
            continue
        notes = [f"checked to {iso(row.checked_until_ms)}"] if row.state == "partial" else []
        notes += [f"repaired {row.repaired}"] if row.repaired else []
        notes += [f"{row.unplaceable} without a usable timestamp"] if row.unplaceable else []
        lines.append(_line(label, row.counts(), notes))
    repaired = [f"repaired {result.repaired}"] if result.repaired else []
    lines.append(_line("total", summary, repaired))
    lines += [f"wrote {name}" for name in summary["repair_objects"]]
    raced = "not repaired: another writer created {} first; run verify again"
    lines += map(raced.format, result.conflicts)
    if result.still_missing:
        more = result.still_missing - len(result.missing_ids)
        named = ", ".join(result.missing_ids) + (f" (and {more} more)" if more else "")
        lines.append(f"missing {result.still_missing}: {named}")
        if not result.repaired and not result.conflicts:
            lines.append("run again with --repair to write them")
    if result.duplicated:
        holders = ", ".join(summary["duplicate_objects"])
        lines.append(f"duplicated {result.duplicated} ids, held by: {holders}")
    return [*lines, VERDICTS[result.problem]] if result.problem in VERDICTS else lines


VERDICTS = {
    None: "OK: nothing missing or duplicated in the hours checked",
    "nothing checked": "NOTHING CHECKED: no hour of the range is settled (no checkpoint under "
    "STATE_KEY, or the collector has not got this far); this is not a success",
    "cut short by the deadline": "CUT SHORT: the deadline came before every settled hour was "
    "checked; run again",
}
FOUND = "FOUND: events missing and not repaired, duplicated, or a repair that lost a race"


def exit_code(result: VerifyResult) -> int:
    """0 all well; 1 found (a lost repair race too) or nothing checked; 3 cut short."""
    return {None: EXIT_OK, "cut short by the deadline": EXIT_FAILED}.get(result.problem, EXIT_FOUND)


def run(config: Config, bucket, clock: Clock, request: Request, out: TextIO) -> int:
    """The CLI: verify, then print the report (text or --json); the exit code."""
    seconds = ((request.until_ms - request.since_ms) // HOUR_MS + 2) * HOUR_DEADLINE_SECONDS
    options = {"repair": request.repair, "deadline": Deadline(clock, seconds, 0)}
    result = verify_range(config, bucket, clock, request.since_ms, request.until_ms, **options)
    summary = summary_of(result) | {"exit_code": exit_code(result)}
    if request.json:
        lines = [json.dumps(_hour_json(row)) for row in result.hours]
        lines.append(json.dumps({"summary": summary}))
    else:
        uri = f"gs://{bucket.name}/{config.prefix}".rstrip("/")
        lines = report_text(result, summary, uri, config.overlap_seconds)
    print("\n".join(lines), file=out, flush=True)
    return summary["exit_code"]


def summary_line(result: VerifyResult) -> tuple[int, str, dict]:
    """The one line the function's verify logs: INFO all accounted for, WARNING nothing checked
    or cut short, ERROR found; ``verify_*`` fields for the metrics, ``outcome`` apart."""
    problem = "found" if result.found else result.problem  # found outranks a cut short
    severity = {None: logging.INFO, "found": logging.ERROR}.get(problem, logging.WARNING)
    counts = (
        f"{result.hours_checked} hours checked, {result.in_harness} in Harness, "
        f"{result.in_bucket} in the bucket, {result.missing} missing, {result.repaired} "
        f"repaired, {result.duplicated} duplicated"
    )
    parts = [counts, VERDICTS.get(problem, FOUND)]
    if result.cut_short:
        rest = next(row.start_ms for row in result.hours if row.state == "in_progress")
        parts.append(
            f"check the rest with python -m harness_audit verify --since {iso(rest)} "
            f"--until {iso(result.until_ms)}"
        )
    if result.missing_ids:
        parts.append(f"still missing: {', '.join(result.missing_ids)}")
    fields = {f"verify_{name}": value for name, value in summary_of(result).items()}
    outcome = {"outcome": "verified" if problem is None else "verify_failed"}
    return severity, "verify: " + "; ".join(parts), outcome | fields | {"verify_problem": problem}
