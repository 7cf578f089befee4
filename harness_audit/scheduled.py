"""The function's verify (``command=verify``): the last settled day by verify_range, under the
collector's lease (never paging Harness at the same time), which is all it writes to the
checkpoint. What MAX_RUN_SECONDS leaves is reported (``cut_short``), never continued."""

import logging
import uuid

from harness_audit import verify
from harness_audit.checkpoint import CheckpointStore
from harness_audit.clock import Clock, Deadline, iso
from harness_audit.pacing import Pacer
from harness_audit.state import ORIGIN_GUIDE

FOUND = "FOUND: events missing and not repaired, duplicated, or a repair that lost a race"


def verify_scheduled(config, bucket, clock: Clock, pacer: Pacer) -> verify.VerifyResult:
    """Verify (with VERIFY_REPAIR, repair) the last settled day from a whole hour, so that daily
    runs leave no gap; LeaseHeld when the collector or another verify holds the lease."""
    deadline = Deadline.for_run(clock, config.max_run_seconds)
    store = CheckpointStore(config, bucket, deadline)
    loaded = store.load(clock.now_ms())
    settled = verify.settled_until(loaded.state, config.overlap_seconds * 1000)
    ours = settled is not None and loaded.state.origin != ORIGIN_GUIDE
    until = settled if ours else clock.now_ms()
    since = until - verify.DAY_MS - (until - verify.DAY_MS) % verify.HOUR_MS
    if not ours:  # no checkpoint (so no watermark), or not ours: nothing to lease or check
        hours = tuple(verify.plan_hours(since, until, None))
        return verify.VerifyResult(since, until, loaded.state.watermark_ms, None, hours)
    taken = store.take(loaded, f"verify-{uuid.uuid4().hex}", clock.now_ms())
    try:
        options = {"repair": config.verify_repair, "deadline": deadline, "pacer": pacer}
        return verify.verify_range(config, bucket, clock, since, until, **options)
    finally:  # the state as loaded: only the lease was ours to write
        store.release(taken, clock.now_ms())


def summary_line(result: verify.VerifyResult) -> tuple[int, str, dict]:
    """The one line a verify logs: INFO all accounted for, WARNING nothing checked or cut short,
    ERROR found; ``verify_*`` fields for the metrics, ``outcome`` apart from the collector's."""
    problem = "found" if result.found else result.problem  # found outranks a cut short
    severity = {None: logging.INFO, "found": logging.ERROR}.get(problem, logging.WARNING)
    counts = (
        f"{result.hours_checked} hours checked, {result.in_harness} in Harness, "
        f"{result.in_bucket} in the bucket, {result.missing} missing, {result.repaired} "
        f"repaired, {result.duplicated} duplicated"
    )
    parts = [counts, verify.VERDICTS.get(problem, FOUND)]
    if result.cut_short:
        rest = next(row.start_ms for row in result.hours if row.state == "in_progress")
        parts.append(
            f"check the rest with python -m harness_audit verify --since {iso(rest)} "
            f"--until {iso(result.until_ms)}"
        )
    if result.missing_ids:
        parts.append(f"still missing: {', '.join(result.missing_ids)}")
    fields = {f"verify_{name}": value for name, value in verify.summary_of(result).items()}
    outcome = {"outcome": "verified" if problem is None else "verify_failed"}
    return severity, "verify: " + "; ".join(parts), outcome | fields | {"verify_problem": problem}
