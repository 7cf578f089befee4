"""What a verify result calls a problem, and the exit code the CLI maps it to."""

from dataclasses import replace

from harness_audit.cli_common import EXIT_FAILED, EXIT_FOUND, EXIT_OK
from harness_audit.verify import HOUR_MS, VerifyResult, exit_code, plan_hours, summary_of

T = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def result(settled_ms, **hour_fields) -> VerifyResult:
    hours = plan_hours(T, T + 2 * HOUR_MS, settled_ms)
    hours = [replace(h, **hour_fields) if h.checked_until_ms else h for h in hours]
    return VerifyResult(T, T + 2 * HOUR_MS, settled_ms, settled_ms, tuple(hours))


def test_all_checked_and_complete_is_ok():
    done = result(T + 2 * HOUR_MS, in_harness=3, in_bucket=3)
    assert done.checked and done.problem is None and exit_code(done) == EXIT_OK
    assert summary_of(done)["hours_checked"] == 2 and summary_of(done)["in_harness"] == 6


def test_nothing_checked_is_not_all_good():
    for empty in (result(None), result(T)):
        assert not empty.checked and empty.hours_checked == 0
        assert empty.problem == "nothing checked" and exit_code(empty) == EXIT_FOUND
        assert summary_of(empty)["checked"] is False


def test_items_without_a_usable_timestamp_count_as_missing():
    found = result(T + 2 * HOUR_MS, in_harness=3, in_bucket=3, unplaceable=1)
    assert found.missing == found.still_missing == 2
    assert found.problem == "found" and exit_code(found) == EXIT_FOUND


def test_missing_ids_are_named_up_to_twenty():
    ids = tuple(f"id-{n:02d}" for n in range(15))
    found = result(T + 2 * HOUR_MS, still_missing=ids)
    assert found.still_missing == 30 and len(found.missing_ids) == 20
    assert exit_code(found) == EXIT_FOUND


def test_a_lost_repair_race_and_a_deadline_are_problems():
    raced = result(T + 2 * HOUR_MS, conflict="gs://b/x")
    assert raced.problem == "found" and raced.conflicts == ["gs://b/x", "gs://b/x"]
    cut = replace(result(T + 2 * HOUR_MS), cut_short=True)
    assert cut.problem == "cut short by the deadline" and exit_code(cut) == EXIT_FAILED
