"""The function's verify (a Pub/Sub message with ``command=verify``), through
functions-framework against fake-gcs-server and the Harness simulator."""

import io
import json

import pytest
from support import (
    HOUR_MS,
    MIN_MS,
    STATE_KEY,
    assert_exactly_once,
    content_of,
    publish,
    state_of,
)

from devtools.cloudevents import pubsub_event
from devtools.sample_events import generate_events
from harness_audit import verify
from harness_audit.cli import main as cli
from harness_audit.clock import iso

pytestmark = pytest.mark.integration

PREFIX = "harness/audit/"
LATE_MS = 4 * HOUR_MS  # far later than OVERLAP_SECONDS (10 minutes)


def verify_message(command: str = "verify"):
    return pubsub_event("local-project", "harness-audit-trigger", b"{}", {"command": command})


def objects(bucket) -> list[str]:
    return sorted(blob.name for blob in bucket.list_blobs(prefix=PREFIX))


def ids_in(bucket, name: str) -> list[str]:
    lines = bucket.blob(name).download_as_bytes().splitlines()
    return [json.loads(line)["auditId"] for line in lines]


@pytest.fixture
def missed(start_instance, harness, clock, bucket):
    """Two collector runs that miss every tenth event: it becomes visible four hours after its
    timestamp, when the collector has moved past it (its overlap is ten minutes)."""
    t0 = clock.now_ms()
    events = generate_events(400, t0 - 3 * HOUR_MS, t0 - 1, seed=181)
    publish(harness, events, delay_ms=lambda index: LATE_MS if index % 10 == 0 else 0)
    instance = start_instance(START_MINUTES_BACK=180)
    assert instance.invoke().status == 200
    clock.advance(5 * 3600)  # now the late ones are visible, behind the collector
    assert instance.invoke().summary["window_complete"]
    settled = t0 - 10 * MIN_MS  # the first run's watermark less the overlap
    late = [event for index, event in enumerate(events) if index % 10 == 0]
    lost = sorted(event["auditId"] for event in late if event["timestamp"] < settled)
    assert len(lost) > 30
    return instance, events, lost


def test_verify_repairs_what_the_collector_missed_exactly_once(missed, bucket, harness):
    instance, events, lost = missed
    before, generation = content_of(bucket), bucket.get_blob(STATE_KEY).generation
    harness.clear_requests()

    result = instance.invoke(verify_message())

    assert result.status == 200, result.logs
    line = result.summary
    assert (
        line["severity"] == "INFO" and line["outcome"] == "verified" and line["command"] == "verify"
    )
    assert line["verify_missing"] == line["verify_repaired"] == len(lost)
    assert line["verify_still_missing"] == 0 and line["verify_duplicated"] == 0
    assert line["verify_in_harness"] == line["verify_in_bucket"] + len(lost)
    assert line["verify_cut_short"] is False
    assert f"{len(lost)} missing, {len(lost)} repaired, 0 duplicated; OK" in line["message"]
    repairs = [name for name in objects(bucket) if "-repair-" in name]
    assert sorted(i for name in repairs for i in ids_in(bucket, name)) == lost
    assert_exactly_once(bucket, [event["auditId"] for event in events])
    # Only the lease was written, and it is free again.
    assert content_of(bucket) == before and state_of(bucket)["lease"] is None
    assert bucket.get_blob(STATE_KEY).generation > generation
    # The last settled day, from the hour it began, and nothing past the watermark less
    # the overlap.
    settled = state_of(bucket)["watermark_ms"] - 10 * MIN_MS
    assert line["verify_until"] == iso(settled) == line["verify_checked_until"]
    day_before = settled - 24 * HOUR_MS
    assert line["verify_since"] == iso(day_before - day_before % HOUR_MS)
    assert line["verify_hours_checked"] == 25 and line["verify_hours_in_progress"] == 0
    assert max(request.body["endTime"] for request in harness.requests) == settled - 1

    written = objects(bucket)
    again = instance.invoke(verify_message())
    assert again.status == 200 and again.summary["outcome"] == "verified"
    assert again.summary["verify_missing"] == again.summary["verify_repaired"] == 0
    assert objects(bucket) == written  # a second verify writes nothing
    # The collector goes on, never blocked by a lease verify forgot.
    assert instance.invoke().summary["outcome"] == "ok"
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_verify_repair_false_reports_names_and_fails(missed, bucket, environment):
    instance, _, lost = missed
    environment.setenv("VERIFY_REPAIR", "false")
    instance.module._instance = None  # a new instance reads the setting
    written = objects(bucket)
    result = instance.invoke(verify_message())
    assert result.status == 500
    line = result.summary
    assert line["severity"] == "ERROR" and line["outcome"] == "verify_failed"
    assert line["verify_problem"] == "found"
    assert line["verify_missing"] == line["verify_still_missing"] == len(lost)
    assert line["verify_repaired"] == 0 and line["verify_missing_ids"] == lost[:20]
    assert ", ".join(lost[:20]) in line["message"]
    assert objects(bucket) == written


def test_a_verify_without_a_checkpoint_warns_and_the_cli_exits_1(
    start_instance, harness, clock, bucket
):
    t0 = clock.now_ms()
    publish(harness, generate_events(50, t0 - 2 * HOUR_MS, t0, seed=182))
    result = start_instance().invoke(verify_message())
    assert result.status == 200
    line = result.summary
    assert line["severity"] == "WARNING" and line["outcome"] == "verify_failed"
    assert line["verify_problem"] == "nothing checked"
    assert line["verify_hours_checked"] == 0 and line["verify_checked"] is False
    assert "NOTHING CHECKED" in line["message"]
    # Nothing read from Harness, nothing written: no checkpoint created by the lease either.
    assert harness.requests == [] and list(bucket.list_blobs()) == []

    out, err = io.StringIO(), io.StringIO()
    since, until = iso(t0 - 2 * HOUR_MS), iso(t0)
    code = cli(["verify", "--since", since, "--until", until], clock=clock, stdout=out, stderr=err)
    assert code == 1 and "NOTHING CHECKED" in out.getvalue()


def test_a_held_lease_skips_verify_and_changes_nothing(missed, bucket, harness, clock):
    instance, _, _ = missed
    state = state_of(bucket)
    state["lease"] = {"owner": "a-collector-run", "expires_ms": clock.now_ms() + 60_000}
    bucket.blob(STATE_KEY).upload_from_string(json.dumps(state))
    generation = bucket.get_blob(STATE_KEY).generation
    harness.clear_requests()
    result = instance.invoke(verify_message())
    assert result.status == 200 and result.summary["outcome"] == "skipped"
    assert "another run holds the lease" in result.summary["message"]
    assert bucket.get_blob(STATE_KEY).generation == generation and harness.requests == []


def test_the_collector_is_skipped_while_verify_holds_the_lease(missed, bucket, mocker):
    instance, _, _ = missed
    during = []
    real = verify.verify_range

    def collector_arrives(*args, **kwargs):
        during.append(instance.invoke())  # a scheduled run, on the same instance
        return real(*args, **kwargs)

    mocker.patch.object(verify, "verify_range", collector_arrives)
    before = content_of(bucket)
    assert instance.invoke(verify_message()).summary["outcome"] == "verified"
    (collector,) = during
    assert collector.status == 200 and collector.summary["outcome"] == "skipped"
    assert "another run holds the lease" in collector.summary["message"]
    assert content_of(bucket) == before and state_of(bucket)["lease"] is None


def test_an_unknown_command_fails_loudly_and_touches_nothing(missed, bucket, harness):
    instance, _, _ = missed
    before, generation = state_of(bucket), bucket.get_blob(STATE_KEY).generation
    harness.clear_requests()
    result = instance.invoke(verify_message("verfy"))
    assert result.status == 500
    line = result.summary
    assert line["severity"] == "ERROR" and line["outcome"] == "verify_failed"  # verify's alert
    assert "unknown command 'verfy'" in line["message"] and line["error"] == "NeedsFix"
    assert state_of(bucket) == before and bucket.get_blob(STATE_KEY).generation == generation
    assert harness.requests == []


def test_a_day_longer_than_one_run_is_cut_short_and_says_so(missed, bucket, environment):
    instance, _, _ = missed
    # One request every 10 s, 10 s a run: the deadline comes after the first hour.
    environment.setenv("MAX_REQUESTS_PER_MINUTE", "6")
    environment.setenv("MAX_RUN_SECONDS", "10")
    instance.module._instance = None
    result = instance.invoke(verify_message())
    assert result.status == 200
    line = result.summary
    assert line["severity"] == "WARNING" and line["outcome"] == "verify_failed"
    assert line["verify_problem"] == "cut short by the deadline"
    assert line["verify_cut_short"] is True and 0 < line["verify_hours_checked"] < 24
    assert "CUT SHORT" in line["message"]
    assert "python -m harness_audit verify --since" in line["message"]
    assert state_of(bucket)["lease"] is None


def test_collector_and_verify_share_one_pacer(missed, clock, environment):
    instance, _, _ = missed
    environment.setenv("MAX_REQUESTS_PER_MINUTE", "60")
    instance.module._instance = None
    clock.advance(600)
    clock.slept.clear()
    collected = instance.invoke().summary
    checked = instance.invoke(verify_message()).summary
    requests = collected["requests"] + checked["verify_harness_requests"]
    # One request a second across both: verify's first waits for the collector's last.
    assert requests > 20
    assert sum(clock.slept) == pytest.approx(requests - 1, abs=0.01)


def test_a_verify_that_fails_says_so_and_releases_the_lease(missed, bucket, harness, environment):
    instance, _, _ = missed
    environment.setenv("MAX_RETRIES", "1")
    instance.module._instance = None
    before = content_of(bucket)
    harness.inject("503_html", "503_html")
    result = instance.invoke(verify_message())
    assert result.status == 500
    line = result.summary
    assert line["severity"] == "ERROR" and line["outcome"] == "verify_failed"
    assert line["error"] == "HarnessUnavailable" and line["message"].startswith("verify failed: ")
    assert content_of(bucket) == before and state_of(bucket)["lease"] is None
    # The lease is free: the next verify runs and repairs.
    assert instance.invoke(verify_message()).summary["outcome"] == "verified"
