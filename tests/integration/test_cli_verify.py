"""``python -m harness_audit verify`` against what the real function wrote: fake-gcs-server,
the Harness simulator, the collector run first through functions-framework."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import HOUR_MS, MIN_MS, STATE_KEY, assert_exactly_once, publish, state_of

from devtools.hostile_harness import HostileHarness
from devtools.sample_events import generate_events
from harness_audit.cli import main
from harness_audit.clock import Deadline, SystemClock, iso
from harness_audit.config import load_config
from harness_audit.sink import ObjectSink
from harness_audit.verify import exit_code, verify_range

pytestmark = pytest.mark.integration

PREFIX = "harness/audit/"
DAY_MS = 24 * HOUR_MS
ROOT = Path(__file__).resolve().parents[2]


def verify(clock, *args):
    out, err = io.StringIO(), io.StringIO()
    code = main(["verify", *args], clock=clock, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def verify_json(clock, *args):
    code, out, err = verify(clock, *args, "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert "summary" in lines[-1], out
    return code, lines[:-1], lines[-1]["summary"], err


def data_objects(bucket):
    return sorted(blob.name for blob in bucket.list_blobs(prefix=PREFIX))


def rewrite(bucket, name, change):
    blob = bucket.blob(name)
    lines = blob.download_as_bytes().splitlines(keepends=True)
    blob.upload_from_string(b"".join(change(lines)))


def line_id(line: bytes) -> str:
    event = json.loads(line)
    return event.get("auditId", event.get("auditEventId"))


@pytest.fixture
def collected(start_instance, harness, clock, bucket):
    """Four hours of events, collected by one run of the function: watermark = now."""
    t0 = clock.now_ms()
    events = generate_events(800, t0 - 4 * HOUR_MS, t0 - 1, seed=71)
    publish(harness, events)
    instance = start_instance(START_MINUTES_BACK=240)
    result = instance.invoke()
    assert result.status == 200 and result.summary["window_complete"], result.logs
    return instance, t0, events


def test_everything_delivered_exits_0(collected, clock):
    _, t0, events = collected
    code, out, err = verify(clock, "--since", iso(t0 - 4 * HOUR_MS), "--until", iso(t0))
    assert code == 0, out + err
    assert "OK: nothing missing or duplicated" in out
    assert err == ""
    # The last ten minutes are the next run's overlap: in progress, not counted.
    settled = t0 - 10 * MIN_MS
    expected = sum(1 for event in events if event["timestamp"] < settled)
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1:5] == [str(expected), str(expected), "0", "0"]


def test_a_line_removed_behind_the_collectors_back_is_found_named_and_repaired(
    collected, clock, bucket, harness
):
    instance, t0, events = collected
    (name,) = data_objects(bucket)
    target = next(e for e in events if t0 - 3 * HOUR_MS <= e["timestamp"] < t0 - 2 * HOUR_MS)
    rewrite(bucket, name, lambda lines: [x for x in lines if line_id(x) != target["auditId"]])
    since, until = iso(t0 - 4 * HOUR_MS), iso(t0)

    code, out, err = verify(clock, "--since", since, "--until", until)
    assert code == 1, out + err
    assert f"missing 1: {target['auditId']}" in out
    assert "run again with --repair" in out
    hour = iso(t0 - 3 * HOUR_MS)[:16] + "Z"
    row = next(line for line in out.splitlines() if line.startswith(hour))
    assert row.split()[3] == "1"  # the missing column

    code, _rows, summary, _ = verify_json(clock, "--since", since, "--until", until, "--repair")
    assert code == 0, summary
    assert summary["missing"] == 1 and summary["repaired"] == 1 and summary["still_missing"] == 0
    repair_name = (
        f"{PREFIX}2025/06/10/harness-audit-repair-20250610T110000000Z-20250610T120000000Z"
        "-0001.jsonl"
    )
    assert summary["repair_objects"] == [f"gs://{bucket.name}/{repair_name}"]
    blob = bucket.get_blob(repair_name)
    assert [line_id(line) for line in blob.download_as_bytes().splitlines()] == [target["auditId"]]
    assert blob.metadata["event-count"] == "1"
    assert blob.metadata["window-start"] == iso(t0 - 3 * HOUR_MS)
    assert blob.metadata["window-end"] == iso(t0 - 2 * HOUR_MS)
    assert blob.metadata["output-format"] == "api"
    assert blob.content_type == "application/x-ndjson"

    objects = data_objects(bucket)
    code, out, _ = verify(clock, "--since", since, "--until", until, "--repair")
    assert code == 0 and "wrote" not in out
    assert data_objects(bucket) == objects  # a second repair writes nothing
    assert verify(clock, "--since", since, "--until", until)[0] == 0

    # The collector carries on and never writes the repaired event again.
    clock.advance(3600)
    assert instance.invoke().status == 200
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_a_repair_racing_another_repair_writes_nothing_twice(collected, clock, bucket, mocker):
    _, t0, events = collected
    (name,) = data_objects(bucket)
    target = next(e for e in events if t0 - 2 * HOUR_MS <= e["timestamp"] < t0 - HOUR_MS)
    removed = []

    def remove(lines):
        removed.extend(x for x in lines if line_id(x) == target["auditId"])
        return [x for x in lines if line_id(x) != target["auditId"]]

    rewrite(bucket, name, remove)
    real_create = ObjectSink.create
    raced = []

    def another_verify_first(self, object_name, buffer, **kwargs):
        if not raced:  # between our re-read and our write, another --repair writes the hour
            raced.append(object_name)
            bucket.blob(object_name).upload_from_string(removed[0])
        return real_create(self, object_name, buffer, **kwargs)

    mocker.patch.object(ObjectSink, "create", another_verify_first)
    since, until = iso(t0 - 2 * HOUR_MS), iso(t0 - HOUR_MS)
    code, _, summary, _ = verify_json(clock, "--since", since, "--until", until, "--repair")
    # The race is lost: said so, non-zero, never retried, nothing written twice.
    assert code == 1, summary
    assert summary["missing"] == 1 and summary["repaired"] == 0
    assert summary["repair_conflicts"] == [f"gs://{bucket.name}/{raced[0]}"]
    assert [n for n in data_objects(bucket) if "repair" in n] == [raced[0]]
    assert raced[0].endswith("-0001.jsonl")
    # What the other writer wrote is found by the next verify.
    code, _, summary, _ = verify_json(clock, "--since", since, "--until", until, "--repair")
    assert code == 0 and summary["still_missing"] == 0 and summary["repaired"] == 0


def test_a_second_repair_of_an_hour_takes_the_next_part(collected, clock, bucket):
    _, t0, events = collected
    (name,) = data_objects(bucket)
    hour = [e["auditId"] for e in events if t0 - 3 * HOUR_MS <= e["timestamp"] < t0 - 2 * HOUR_MS]
    first, second = hour[:2]
    since, until = iso(t0 - 3 * HOUR_MS), iso(t0 - 2 * HOUR_MS)
    rewrite(bucket, name, lambda lines: [x for x in lines if line_id(x) != first])
    assert verify_json(clock, "--since", since, "--until", until, "--repair")[2]["repaired"] == 1
    rewrite(bucket, name, lambda lines: [x for x in lines if line_id(x) != second])
    code, _, summary, _ = verify_json(clock, "--since", since, "--until", until, "--repair")
    assert code == 0 and summary["repaired"] == 1
    repairs = [n for n in data_objects(bucket) if "-repair-" in n]
    assert [n.rsplit("-", 1)[1] for n in repairs] == ["0001.jsonl", "0002.jsonl"]
    written = bucket.blob(repairs[1]).download_as_bytes().splitlines()
    assert [line_id(line) for line in written] == [second]


def test_a_repair_is_written_in_the_streaming_layout(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(200, t0 - HOUR_MS, t0 - 1, seed=75)
    publish(harness, events)
    assert start_instance(OUTPUT_FORMAT="streaming").invoke().status == 200
    (name,) = data_objects(bucket)
    target = events[len(events) // 2]
    rewrite(bucket, name, lambda lines: [x for x in lines if line_id(x) != target["auditId"]])
    since, until = iso(t0 - HOUR_MS), iso(t0)
    code, _, summary, _ = verify_json(clock, "--since", since, "--until", until, "--repair")
    assert code == 0 and summary["repaired"] == 1
    (repair,) = [blob for blob in bucket.list_blobs(prefix=PREFIX) if "repair" in blob.name]
    line = json.loads(repair.download_as_bytes())
    assert line["auditEventId"] == target["auditId"] and "auditId" not in line
    assert repair.metadata["output-format"] == "streaming"
    assert verify(clock, "--since", since, "--until", until)[0] == 0


def test_a_duplicated_line_is_reported_with_its_object_and_never_deleted(collected, clock, bucket):
    _, t0, _events = collected
    (name,) = data_objects(bucket)
    doubled = {}

    def double_one(lines):
        line = next(x for x in lines if json.loads(x)["timestamp"] < t0 - HOUR_MS)
        doubled["id"] = line_id(line)
        return [*lines, line]

    rewrite(bucket, name, double_one)
    code, out, _ = verify(clock, "--since", iso(t0 - 4 * HOUR_MS), "--until", iso(t0), "--repair")
    assert code == 1
    assert f"duplicated 1 ids, held by: gs://{bucket.name}/{name}" in out
    assert "wrote" not in out
    assert data_objects(bucket) == [name]
    content = bucket.blob(name).download_as_bytes().splitlines()
    assert [line_id(line) for line in content].count(doubled["id"]) == 2


def test_a_range_past_the_watermark_is_checked_up_to_it_and_the_rest_is_in_progress(
    collected, clock, bucket, harness
):
    _, t0, events = collected
    # Stamped after the watermark, not collected yet: neither counted nor repaired.
    publish(harness, generate_events(50, t0, t0 + HOUR_MS, seed=72))
    clock.advance(2 * 3600)
    harness.clear_requests()
    code, rows, summary, _ = verify_json(
        clock, "--since", iso(t0 - 2 * HOUR_MS), "--until", iso(t0 + 2 * HOUR_MS), "--repair"
    )
    assert code == 0, rows
    assert [row["state"] for row in rows] == ["checked", "partial", "in_progress", "in_progress"]
    settled = t0 - 10 * MIN_MS  # the watermark less OVERLAP_SECONDS
    assert rows[1]["checked_until"] == iso(settled)
    assert summary["checked_until"] == iso(settled)
    assert summary["watermark"] == iso(t0)
    assert summary["hours_in_progress"] == 2 and summary["repaired"] == 0
    expected = sum(1 for event in events if t0 - 2 * HOUR_MS <= event["timestamp"] < settled)
    assert summary["in_harness"] == summary["in_bucket"] == expected
    assert "in_harness" not in rows[2]
    assert harness.requests  # Harness is asked about the checked hours only
    assert max(request.body["endTime"] for request in harness.requests) == settled - 1


def test_nothing_is_checked_before_the_first_window_completes(harness, clock, bucket, environment):
    t0 = clock.now_ms()
    publish(harness, generate_events(20, t0 - HOUR_MS, t0, seed=73))
    code, rows, summary, _ = verify_json(
        clock, "--since", iso(t0 - HOUR_MS), "--until", iso(t0), "--repair"
    )
    # Nothing checked is not "all good" (a wrong STATE_KEY would otherwise pass forever).
    assert code == 1
    assert [row["state"] for row in rows] == ["in_progress"]
    assert summary["checked_until"] is None and summary["hours_checked"] == 0
    assert summary["checked"] is False
    code, out, _ = verify(clock, "--since", iso(t0 - HOUR_MS), "--until", iso(t0))
    assert code == 1 and "NOTHING CHECKED" in out and "OK" not in out
    assert harness.requests == [] and data_objects(bucket) == []
    assert bucket.get_blob(STATE_KEY) is None


def test_verify_never_touches_the_checkpoint_or_a_held_lease(collected, clock, bucket):
    _, t0, _ = collected
    state = state_of(bucket)
    state["lease"] = {"owner": "another-run", "expires_ms": t0 + 60_000}
    bucket.blob(STATE_KEY).upload_from_string(json.dumps(state))
    generation = bucket.get_blob(STATE_KEY).generation
    assert verify(clock, "--since", iso(t0 - 2 * HOUR_MS), "--until", iso(t0), "--repair")[0] == 0
    assert bucket.get_blob(STATE_KEY).generation == generation


def test_a_backfill_window_spanning_days_is_found_from_its_start_folder(
    start_instance, harness, clock, bucket
):
    t0 = clock.now_ms()
    events = generate_events(1_500, t0 - 3 * DAY_MS, t0 - 1, seed=74)
    publish(harness, events)
    assert start_instance(START_MINUTES_BACK=3 * 24 * 60).invoke().status == 200
    (name,) = data_objects(bucket)
    assert name.startswith(f"{PREFIX}2025/06/07/")  # the window start's folder
    late = [e for e in events if t0 - 5 * HOUR_MS <= e["timestamp"] < t0 - 4 * HOUR_MS]
    gone = {late[0]["auditId"], late[-1]["auditId"]}
    rewrite(bucket, name, lambda lines: [x for x in lines if line_id(x) not in gone])
    # Objects of other days that cannot hold the range are never read.
    bucket.blob(f"{PREFIX}2025/06/01/unrelated.jsonl").upload_from_string(b"{}\n")

    code, rows, summary, _ = verify_json(
        clock, "--since", iso(t0 - DAY_MS), "--until", iso(t0 - 2 * HOUR_MS)
    )
    assert code == 1
    assert len(rows) == 22 and all(row["state"] == "checked" for row in rows)
    assert sorted(summary["missing_ids"]) == sorted(gone)
    assert summary["objects_read"] == 1  # one object, read once for 22 hours
    expected = sum(1 for e in events if t0 - DAY_MS <= e["timestamp"] < t0 - 2 * HOUR_MS)
    assert summary["in_harness"] == expected


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--since", "yesterday", "--until", "2025-06-10"], "--since 'yesterday' is not an ISO"),
        (["--since", "2025-06-10", "--until", "2025-06-09T00:00Z"], "is not before --until"),
        (["--since", "2025-01-01", "--until", "2025-06-10"], "more than 31: "),
        (["--since", "2025-06-10"], "the following arguments are required: --until"),
        (["--since", "2025-06-09", "--until", "2025-06-10", "--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(environment, clock, args, words):
    code, out, err = verify(clock, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("harness_audit verify: error: ") and err.count("\n") == 1
    assert words in err


def test_configuration_errors_exit_2_naming_the_variable(environment, clock):
    environment.delenv("GCS_BUCKET")
    environment.setenv("PAGE_SIZE", "1000")
    code, _, err = verify(clock, "--since", "2025-06-10", "--until", "2025-06-10T01:00Z")
    assert code == 2 and err.count("\n") == 1
    assert "GCS_BUCKET is not set" in err and "PAGE_SIZE=1000 is out of range" in err


def test_a_range_over_31_days_runs_with_force(collected, clock):
    _, t0, _ = collected
    code, _, summary, _ = verify_json(
        clock, "--since", iso(t0 - 40 * DAY_MS), "--until", iso(t0 - 39 * DAY_MS), "--force"
    )
    assert code == 0 and summary["hours_checked"] == 24 and summary["in_harness"] == 0


def test_a_missing_google_login_is_one_line(environment, clock, tmp_path):
    environment.delenv("STORAGE_EMULATOR_HOST")
    environment.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    code, out, err = verify(clock, "--since", "2025-06-10", "--until", "2025-06-10T01:00Z")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "gcloud auth application-default login" in err


def test_a_rejected_key_exits_2_and_never_shows_the_key(collected, clock, harness, environment):
    _, t0, _ = collected
    harness.inject("401")
    code, _, err = verify(clock, "--since", iso(t0 - 2 * HOUR_MS), "--until", iso(t0))
    assert code == 2 and err.count("\n") == 1
    assert "HTTP 401" in err and "HARNESS_API_KEY" in err
    assert os.environ["HARNESS_API_KEY"] not in err


def test_python_m_harness_audit_verify_runs_as_a_process(collected, bucket):
    _, t0, _ = collected
    # The process keeps the real clock, months past the fixture's: a watermark that old lies
    # beyond the longest lookback and is refused, so it moves to the real now.
    state = state_of(bucket)
    state["watermark_ms"] = SystemClock().now_ms()
    bucket.blob(STATE_KEY).upload_from_string(json.dumps(state))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness_audit",
            "verify",
            "--since",
            iso(t0 - 2 * HOUR_MS),
            "--until",
            iso(t0),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout.splitlines()[-1])["summary"]
    assert summary["hours_checked"] == 2 and summary["in_harness"] == summary["in_bucket"] > 0


def test_requests_are_paced_by_max_requests_per_minute(collected, clock, environment):
    _, t0, _ = collected
    environment.setenv("MAX_REQUESTS_PER_MINUTE", "60")
    environment.setenv("PAGE_SIZE", "20")
    clock.slept.clear()
    code, _, summary, _ = verify_json(clock, "--since", iso(t0 - 2 * HOUR_MS), "--until", iso(t0))
    assert code == 0
    assert summary["harness_requests"] > 10
    assert sum(clock.slept) == pytest.approx(summary["harness_requests"] - 1, abs=0.01)


def test_harness_failing_through_its_retries_exits_3(collected, clock, harness, environment):
    _, t0, _ = collected
    environment.setenv("MAX_RETRIES", "1")
    harness.inject("503_html", "503_html")
    code, out, err = verify(clock, "--since", iso(t0 - 2 * HOUR_MS), "--until", iso(t0))
    assert out == ""  # computed first, reported after: nothing half-reported
    assert code == 3 and err.count("error:") == 1
    assert "Harness did not answer usably through 1 retries" in err
    assert "warning: retrying a Harness request" in err  # the client's own log, on stderr
    assert "{" not in err.splitlines()[-1]


def test_a_deadline_cuts_verify_short_and_says_so(collected, clock, bucket):
    """What the deployed function will call: the result says it was cut short, never "OK"."""
    _, t0, _ = collected
    config = load_config(os.environ)
    gone = Deadline(clock, 0, 0)
    result = verify_range(config, bucket, clock, t0 - 2 * HOUR_MS, t0, repair=True, deadline=gone)
    assert result.cut_short and result.problem == "cut short by the deadline"
    assert result.hours_checked == 0 and result.repaired == 0
    assert exit_code(result) == 3
    whole = Deadline(clock, 3600, 0)
    result = verify_range(config, bucket, clock, t0 - 2 * HOUR_MS, t0, repair=True, deadline=whole)
    assert not result.cut_short and result.problem is None and result.hours_checked == 2
    assert result.in_harness == result.in_bucket > 0 and result.missing_ids == ()


def test_an_event_harness_lists_without_a_usable_timestamp_is_never_ok(
    collected, clock, harness, environment
):
    """The collector fails loudly on such an event; verify counts it as missing (exit 1)."""
    _, t0, _ = collected
    with HostileHarness("unplaceable_timestamp", delegate=harness) as hostile:
        environment.setenv("HARNESS_API_BASE", hostile.url)
        code, out, err = verify(clock, "--since", iso(t0 - 2 * HOUR_MS), "--until", iso(t0))
    assert code == 1, out + err
    assert "OK:" not in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert int(total.split()[3]) >= 1  # missing
