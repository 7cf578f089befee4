"""The deployed function's verify (a Pub/Sub message with ``command=verify``).

It checks the last settled day with the CLI's verify_range, under the collector's lease: the
two never page Harness at once and share one pacer per instance. The lease is the only thing
it writes to the checkpoint. It is bounded by MAX_RUN_SECONDS: what the deadline leaves
unchecked is reported (``cut_short``) for the CLI to finish, never continued.
"""

import logging
import uuid
from dataclasses import replace

from harness_audit.checkpoint import LEASE_MARGIN_SECONDS, CheckpointStore
from harness_audit.clock import Clock, Deadline, iso, write_reserve_seconds
from harness_audit.config import Config
from harness_audit.errors import CollectorError
from harness_audit.logs import log
from harness_audit.pacing import Pacer
from harness_audit.state import ORIGIN_GUIDE
from harness_audit.verify import (
    DAY_MS,
    HOUR_MS,
    VerifyResult,
    plan_hours,
    settled_until,
    summary_of,
    verify_range,
)

# Each verify_range problem's severity and words. The summary's ``outcome`` is "verified"
# or "verify_failed" (the alert's), never the collector's "ok" or "failed".
VERDICTS = {
    None: (logging.INFO, "all accounted for"),
    "nothing checked": (
        logging.WARNING,
        "NOTHING CHECKED: no checkpoint under STATE_KEY, or the collector has not completed a "
        "window; this is not a success",
    ),
    "cut short by the deadline": (logging.WARNING, "not every hour checked"),
    "found": (
        logging.ERROR,
        "events missing and not repaired, duplicated, or a repair lost a race",
    ),
}


def last_day(settled_ms: int) -> tuple[int, int]:
    """Whole hours from the one 24 h before ``settled_ms``: daily runs leave no gap between
    them as long as the watermark moves less than a day and its minutes between two."""
    since = settled_ms - DAY_MS
    return since - since % HOUR_MS, settled_ms


def verify_scheduled(config: Config, bucket, clock: Clock, pacer: Pacer) -> VerifyResult:
    """Verify (and, with VERIFY_REPAIR, repair) the last settled day; LeaseHeld when the
    collector or another verify holds the lease."""
    budget = config.max_run_seconds
    deadline = Deadline(clock, budget, write_reserve_seconds(budget))
    lease = {"lease_seconds": budget + LEASE_MARGIN_SECONDS, "deadline": deadline}
    store = CheckpointStore(bucket, config.state_key, **lease)
    loaded = store.load(clock.now_ms())
    settled = settled_until(loaded.state, config.overlap_seconds * 1000)
    if loaded.generation == 0 or loaded.state.origin == ORIGIN_GUIDE or settled is None:
        # No checkpoint of ours (or not the collector's yet): nothing to lease or check.
        since, until = last_day(clock.now_ms())
        hours = tuple(plan_hours(since, until, None))
        return VerifyResult(since, until, loaded.state.watermark_ms, settled, hours)
    owner = f"verify-{uuid.uuid4().hex}"
    store.ensure_free(loaded.state, owner, clock.now_ms())
    taken = store.acquire(loaded, owner, clock.now_ms())
    try:
        since, until = last_day(settled)
        repair = config.verify_repair
        return verify_range(
            config, bucket, clock, since, until, repair=repair, deadline=deadline, pacer=pacer
        )
    finally:
        try:  # the state as loaded: only the lease was ours to write
            free = replace(loaded.state, lease=None)
            store.save(free, taken.generation, clock.now_ms(), release=True)
        except CollectorError as failure:
            message = "could not release the lease; it expires on its own"
            log(logging.WARNING, message, error=str(failure), command="verify")


def summary_line(result: VerifyResult) -> tuple[int, str, dict]:
    """Severity, message and fields of the one line a verify logs; the fields are named
    ``verify_*`` for the log-based metrics."""
    found = result.still_missing or result.duplicated or result.conflicts
    problem = "found" if found else result.problem
    severity, verdict = VERDICTS[problem]
    parts = [
        f"{result.hours_checked} hours checked, {result.in_harness} in Harness, "
        f"{result.in_bucket} in the bucket, {result.missing} missing, {result.repaired} "
        f"repaired, {result.duplicated} duplicated",
        verdict,
    ]
    if result.cut_short:
        rest = next(row.start_ms for row in result.hours if row.state == "in_progress")
        parts.append(
            "CUT SHORT by MAX_RUN_SECONDS: check the rest with python -m harness_audit verify "
            f"--since {iso(rest)} --until {iso(result.until_ms)}"
        )
    if result.missing_ids:
        parts.append(f"still missing: {', '.join(result.missing_ids)}")
    fields = {f"verify_{name}": value for name, value in summary_of(result).items()}
    outcome = {"outcome": "verified" if problem is None else "verify_failed"}
    return severity, "verify: " + "; ".join(parts), outcome | fields | {"verify_problem": problem}
