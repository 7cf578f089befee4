"""Delivery guarantees, end to end: every expected event written exactly once, by auditId,
across every object, through functions-framework, fake-gcs-server and the simulator."""

import json

import pytest
from support import HOUR_MS, MIN_MS, assert_exactly_once, publish, state_of

from devtools.sample_events import generate_events

pytestmark = pytest.mark.integration


def test_steady_hourly_runs_write_every_event_once(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(1_500, t0 - HOUR_MS, t0 + 3 * HOUR_MS, seed=1)
    publish(harness, events, delay_ms=lambda index: (index * 7919) % 90_000)
    instance = start_instance()
    for minutes in (0, 60, 60, 60, 20):
        clock.advance(minutes * 60)
        result = instance.invoke()
        assert result.status == 200, result.logs
        assert result.summary["window_complete"] is True
    assert_exactly_once(bucket, [event["auditId"] for event in events])
    state = state_of(bucket)
    assert state["watermark_ms"] == t0 + 3 * HOUR_MS + 20 * MIN_MS
    assert state["lease"] is None and state["window"] is None


@pytest.mark.parametrize(("overlap_seconds", "all_delivered"), [(600, True), (0, False)])
def test_late_visible_records_are_caught_by_the_overlap(
    start_instance, harness, clock, bucket, overlap_seconds, all_delivered
):
    t0 = clock.now_ms()
    on_time = generate_events(300, t0 - HOUR_MS, t0, seed=2)
    # Stamped in the last minutes of the first window, visible only after it was read.
    late = generate_events(40, t0 - 5 * MIN_MS, t0 - 1, seed=3)
    publish(harness, on_time)
    publish(harness, late, delay_ms=lambda index: 5 * MIN_MS + 30_000 + index * 1000)
    instance = start_instance(OVERLAP_SECONDS=overlap_seconds)
    assert instance.invoke().summary["events_written"] == 300
    clock.advance(3600)
    second = instance.invoke().summary
    everything = [event["auditId"] for event in on_time + late]
    if all_delivered:
        assert second["events_written"] == 40
        assert second["duplicates_dropped"] > 0  # the overlap re-read what run 1 wrote
        assert_exactly_once(bucket, everything)
    else:
        # Without the overlap the late records are lost: the reason it exists.
        with pytest.raises(AssertionError, match="never written"):
            assert_exactly_once(bucket, everything)


def test_window_shorter_than_overlap_passes_older_ids_on(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(200, t0 - HOUR_MS, t0 + 30 * MIN_MS, seed=4)
    publish(harness, events)
    instance = start_instance()
    for minutes in (0, 2, 2, 2, 30):  # Force runs a couple of minutes apart, then hourly
        clock.advance(minutes * 60)
        assert instance.invoke().status == 200
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_paging_by_time_keeps_the_window_and_only_lowers_its_upper_bound(
    start_instance, harness, clock, bucket
):
    t0 = clock.now_ms()
    events = generate_events(5_000, t0 - HOUR_MS, t0, seed=5)
    publish(harness, events)
    harness.latency_s = 5.0  # on the fake clock: a slow API, with a 60 s budget per run
    instance = start_instance(MAX_RUN_SECONDS=60)
    runs = []
    while not runs or not runs[-1]["window_complete"]:
        result = instance.invoke()
        assert result.status == 200, result.logs
        runs.append(result.summary)
        assert len(runs) < 20
        clock.advance(3600)
    assert len(runs) >= 4
    assert all(not run["window_complete"] for run in runs[:-1])
    assert {run["window_start"] for run in runs} == {runs[0]["window_start"]}
    assert all(run["resumed"] for run in runs[1:])
    requests = harness.listv2_requests()
    assert all("pageToken" not in request.query for request in requests)
    assert {request.body["startTime"] for request in requests} == {t0 - HOUR_MS}
    ends = [request.body["endTime"] for request in requests]
    # Across every page and every resumed run, the upper bound only ever comes down.
    assert ends[0] == t0 and ends == sorted(ends, reverse=True)
    assert_exactly_once(bucket, [event["auditId"] for event in events])
    # The next hour starts from the window's end, not from the clock when it finished.
    state = state_of(bucket)
    assert state["watermark_ms"] == t0


def test_storm_of_429_and_5xx_loses_nothing_and_never_waits_for_real(
    start_instance, harness, clock, bucket
):
    t0 = clock.now_ms()
    events = generate_events(2_000, t0 - HOUR_MS, t0, seed=6)
    publish(harness, events)
    storm = [
        "429",
        "429",
        "503_html",
        "502_html",
        "500_json",
        "truncated_200",
        "cut",
        "reset",
        "429",
        "latency:2",
    ]
    for fault in storm * 3:
        harness.inject(fault, fault, "latency:0")  # two failures, then an answer
    result = start_instance(PAGE_SIZE=50).invoke()
    assert result.status == 200, result.logs
    summary = result.summary
    assert summary["window_complete"] is True
    assert summary["retries"]["http_429"] == 18
    assert summary["retries"]["http_5xx"] == 18
    assert summary["retries"]["malformed_body"] == 6
    assert summary["retries"]["connection"] == 12
    assert harness.pending_faults() == 0
    assert clock.slept and max(clock.slept) <= 30
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_retries_exhausted_fail_the_run_and_keep_progress(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(400, t0 - HOUR_MS, t0, seed=7)
    publish(harness, events)
    instance = start_instance(PAGE_SIZE=100, MAX_RETRIES=3, MAX_OBJECT_MB=0.05)
    # Page 1 and 2 succeed, then the API fails four times in a row on page 3.
    harness.inject("latency:0", "latency:0", "503_html", "503_html", "503_html", "503_html")
    result = instance.invoke()
    assert result.status == 500
    failure = result.summary
    assert failure["severity"] == "ERROR" and failure["error"] == "HarnessUnavailable"
    assert "HTTP 503" in failure["message"] and "3 retries" in failure["message"]
    # Two pages: the second re-reads the first's oldest millisecond, whose event is a repeat.
    assert failure["events_written"] == 199
    assert failure["edge_rereads"] == 1 and failure["duplicates_dropped"] == 0
    state = state_of(bucket)
    assert state["lease"] is None and t0 - HOUR_MS < state["window"]["upper_ms"] < t0
    clock.advance(3600)
    assert instance.invoke().summary["window_complete"] is True
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_filters_reach_harness_and_shape_the_output(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(800, t0 - HOUR_MS, t0, seed=8)
    publish(harness, events)
    result = start_instance(
        FILTER_MODULES="CORE,PMS",
        FILTER_ACTIONS="CREATE,UPDATE,LOGIN",
        STATIC_FILTER="EXCLUDE_LOGIN_EVENTS",
    ).invoke()
    assert result.status == 200
    expected = [
        e["auditId"]
        for e in events
        if e["module"] in ("CORE", "PMS") and e["action"] in ("CREATE", "UPDATE")
    ]
    assert expected
    assert_exactly_once(bucket, expected)
    body = harness.listv2_requests()[0].body
    assert body["modules"] == ["CORE", "PMS"]
    assert body["actions"] == ["CREATE", "UPDATE", "LOGIN"]
    assert body["staticFilter"] == "EXCLUDE_LOGIN_EVENTS"


def test_list_endpoint_fallback_when_listv2_is_missing(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(450, t0 - HOUR_MS, t0, seed=9)
    publish(harness, events)
    harness.listv2_enabled = False
    result = start_instance().invoke()
    assert result.status == 200, result.logs
    assert {request.path for request in harness.requests} == {
        "/audit/api/audits/listV2",
        "/audit/api/audits/list",
    }
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_output_objects_are_ndjson_with_metadata(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(120, t0 - HOUR_MS, t0, seed=10)
    publish(harness, events)
    assert start_instance().invoke().status == 200
    blobs = list(bucket.list_blobs(prefix="harness/audit/"))
    assert len(blobs) == 1
    blob = blobs[0]
    assert blob.content_type == "application/x-ndjson"
    assert blob.metadata["event-count"] == "120"
    assert blob.metadata["part"] == "1"
    assert blob.metadata["window-start"] == "2025-06-10T13:00:00.000Z"
    assert blob.metadata["collector-version"]
    data = blob.download_as_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 120
    by_id = {event["auditId"]: event for event in events}
    for line in data.splitlines():
        event = json.loads(line)
        assert event == by_id[event["auditId"]]  # exactly as Harness returned it
        assert line == json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
