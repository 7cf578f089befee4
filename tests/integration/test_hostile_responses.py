"""A hostile or broken Harness: bounded memory and time, one clear line, no lock-out, no
silent skip. The real function, through functions-framework (or as its own process where
memory is measured), against fake-gcs-server and devtools/hostile_harness.py."""

import json
import time

import psutil
import pytest
from support import (
    ACCOUNT,
    API_KEY,
    HOUR_MS,
    MIN_MS,
    STATE_KEY,
    assert_exactly_once,
    publish,
    state_of,
    written_events,
)

from devtools.function_process import FunctionProcess
from devtools.hostile_harness import HostileHarness
from devtools.sample_events import generate_events
from harness_audit.clock import SystemClock

pytestmark = pytest.mark.integration

EVERY_REQUEST = range(1, 10**9)


@pytest.fixture
def hostile(harness, environment):
    """Start a hostile Harness in front of the simulator and point the function at it."""
    started = []

    def start(kind, at_requests=EVERY_REQUEST, **params):
        server = HostileHarness(kind, delegate=harness, at_requests=at_requests, **params)
        server.start()
        started.append(server)
        environment.setenv("HARNESS_API_BASE", server.url)
        return server

    yield start
    for server in started:
        server.stop()


def peak_rss_mb(process: psutil.Process) -> float:
    with open(f"/proc/{process.pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def ids(events):
    return [event["auditId"] for event in events]


def assert_one_clean_failure(result, error):
    assert result.status == 500
    assert result.summary["error"] == error and result.summary["severity"] == "ERROR"
    assert "Traceback" not in result.stderr
    assert all(len(json.dumps(line).encode()) <= 65_536 for line in result.logs)


def test_a_gzip_bomb_is_refused_undecoded_and_the_page_read_again(
    start_instance, harness, hostile, clock, bucket
):
    t0 = clock.now_ms()
    events = generate_events(100, t0 - 30 * MIN_MS, t0, seed=71)
    publish(harness, events)
    hostile("gzip_bomb", at_requests={1}, size=500_000_000)
    result = start_instance().invoke()
    assert result.status == 200, result.logs
    assert result.summary["retries"] == {"malformed_body": 1}
    assert_exactly_once(bucket, ids(events))


@pytest.mark.parametrize(
    ("kind", "params"),
    [("huge_page", {"size": 60_000_000}), ("endless_chunked", {})],
)
def test_a_page_over_the_cap_is_a_failed_request(
    start_instance, harness, hostile, clock, bucket, kind, params
):
    t0 = clock.now_ms()
    events = generate_events(100, t0 - 30 * MIN_MS, t0, seed=72)
    publish(harness, events)
    hostile(kind, at_requests={1}, **params)
    result = start_instance().invoke()
    assert result.status == 200, result.logs
    assert result.summary["retries"] == {"body_too_large": 1}
    assert_exactly_once(bucket, ids(events))


def test_pages_over_the_cap_fail_the_run_in_bounded_memory(fake_gcs, bucket):
    """As its own process, to measure its peak RSS: 200 MB pages, every time."""
    with HostileHarness("huge_page", size=200_000_000) as server:
        env = {
            "HARNESS_ACCOUNT_ID": ACCOUNT,
            "HARNESS_API_KEY": API_KEY,
            "HARNESS_API_BASE": server.url,
            "GCS_BUCKET": bucket.name,
            "STORAGE_EMULATOR_HOST": fake_gcs.url,
            "MAX_RETRIES": "2",
            "MAX_REQUESTS_PER_MINUTE": "0",
        }
        with FunctionProcess(env) as function:
            status = function.invoke()
            process = psutil.Process(function.process.pid)
            peak_mb = max(
                peak_rss_mb(member) for member in [process, *process.children(recursive=True)]
            )
            output = function.read_output()
    summary = [json.loads(line) for line in output.splitlines() if '"outcome"' in line][-1]
    assert status == 500
    assert summary["error"] == "HarnessUnavailable" and "larger than" in summary["message"]
    # Three 200 MB answers, each cut at the 32 MB cap: the instance has 512 MiB.
    assert peak_mb < 200, peak_mb


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("trickle", {"interval_s": 2.0, "head_first": True}),
        ("trickle", {"interval_s": 2.0}),
        ("silent", {}),
    ],
    ids=["trickling-body", "trickling-status-line", "silent"],
)
def test_the_deadline_holds_whatever_harness_does(
    start_instance, harness, hostile, bucket, kind, params
):
    """On the real clock: MAX_RUN_SECONDS=10 ends the run in about 10 s, a failure since it
    made no progress, with the lease released and nothing else written."""
    publish(harness, generate_events(50, SystemClock().now_ms() - HOUR_MS, SystemClock().now_ms()))
    hostile(kind, **params)
    instance = start_instance(MAX_RUN_SECONDS=10)
    instance.module.CLOCK = SystemClock()
    started = time.monotonic()
    result = instance.invoke()
    elapsed = time.monotonic() - started
    assert elapsed < 13, elapsed
    assert_one_clean_failure(result, "NoProgress")
    assert "MAX_RUN_SECONDS ran out" in result.summary["message"]
    state = state_of(bucket)
    assert state["lease"] is None and state["watermark_ms"] is None and state["window"] is None


@pytest.mark.parametrize("status", [200, 503])
def test_a_body_too_deep_to_decode_is_a_malformed_page(
    start_instance, harness, hostile, clock, bucket, status
):
    t0 = clock.now_ms()
    events = generate_events(250, t0 - 30 * MIN_MS, t0, seed=73)
    publish(harness, events)
    hostile("deep_nesting", at_requests={2}, depth=5000, status=status)
    result = start_instance(PAGE_SIZE=100).invoke()
    assert result.status == 200, result.logs
    assert sum(result.summary["retries"].values()) == 1
    assert_exactly_once(bucket, ids(events))
    assert state_of(bucket)["lease"] is None


def test_a_deeply_nested_401_is_one_clear_line(start_instance, harness, hostile, clock, bucket):
    t0 = clock.now_ms()
    publish(harness, generate_events(250, t0 - 30 * MIN_MS, t0, seed=74))
    hostile("deep_nesting", at_requests={2}, depth=5000, status=401)
    result = start_instance(PAGE_SIZE=100).invoke()
    assert_one_clean_failure(result, "HarnessRejected")
    # What the first page brought is kept, and the lease is free for the next run.
    assert result.summary["events_written"] == 100
    assert state_of(bucket)["lease"] is None


def test_a_200_saying_error_carries_harness_code_and_message(
    start_instance, harness, hostile, clock, bucket
):
    publish(harness, generate_events(10, clock.now_ms() - MIN_MS, clock.now_ms(), seed=75))
    server = hostile("status_error_200", code="INTERNAL_SERVER_ERROR", message="Oops from Harness")
    result = start_instance(MAX_RETRIES=1).invoke()
    assert_one_clean_failure(result, "HarnessUnavailable")
    # Retried like the 5xx whose envelope it carries, then failed: never taken as a page.
    assert server.hostile_count == 2
    assert "INTERNAL_SERVER_ERROR" in result.summary["message"]
    assert "Oops from Harness" in result.summary["message"]


def test_a_5_mb_error_message_stays_a_short_line(start_instance, harness, hostile, clock, bucket):
    hostile("huge_error_message", status=500, size=5_000_000)
    result = start_instance(MAX_RETRIES=1).invoke()
    assert_one_clean_failure(result, "HarnessUnavailable")


def test_items_that_are_not_events_are_counted_never_silently_dropped(
    start_instance, harness, hostile, clock, bucket
):
    t0 = clock.now_ms()
    events = generate_events(100, t0 - 30 * MIN_MS, t0, seed=76)
    publish(harness, events)
    hostile("non_object_items")
    result = start_instance().invoke()
    assert result.status == 200, result.logs
    assert result.summary["events_rejected"]["not_an_object"] > 0
    warnings = [line for line in result.logs if line.get("reason") == "not_an_object"]
    assert len(warnings) == 1 and warnings[0]["severity"] == "WARNING"
    assert_exactly_once(bucket, ids(events))


def test_events_outside_the_range_asked_for_are_never_written(
    start_instance, harness, hostile, clock, bucket
):
    t0 = clock.now_ms()
    events = generate_events(120, t0 - 30 * MIN_MS, t0, seed=77)
    publish(harness, events)
    hostile("out_of_window")
    instance = start_instance()
    first = instance.invoke()
    assert first.status == 200, first.logs
    assert first.summary["events_rejected"]["out_of_range"] > 0
    assert_exactly_once(bucket, ids(events))
    clock.advance(3600)
    second = instance.invoke()
    assert second.status == 200 and second.summary["events_written"] == 0
    # Nothing from the future is carried in the checkpoint for ever.
    assert all(ts <= clock.now_ms() for ts in state_of(bucket)["delivered"].values())


def test_nan_and_infinity_never_reach_an_output_line(
    start_instance, harness, hostile, clock, bucket
):
    t0 = clock.now_ms()
    events = generate_events(50, t0 - 30 * MIN_MS, t0, seed=78)
    publish(harness, events)
    hostile("nan")
    result = start_instance(OUTPUT_FORMAT="streaming").invoke()
    assert result.status == 200, result.logs
    assert result.summary["events_rejected"]["not_json"] >= 1
    for blob in bucket.list_blobs(prefix="harness/audit/"):
        for line in blob.download_as_bytes().splitlines():
            json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} written"))
    assert len(written_events(bucket)) == 50
    assert bucket.get_blob(STATE_KEY) is not None


def test_parts_never_pass_max_object_mb_but_for_one_event_alone(
    start_instance, harness, clock, bucket
):
    t0 = clock.now_ms()
    events = generate_events(300, t0 - 30 * MIN_MS, t0, seed=79)
    huge = dict(events[150], auditEventData={"type": "Big", "blob": "x" * 30_000})
    events[150] = huge
    publish(harness, events)
    result = start_instance(MAX_OBJECT_MB=0.01).invoke()  # 10,000 bytes
    assert result.status == 200, result.logs
    sizes = {}
    for blob in bucket.list_blobs(prefix="harness/audit/"):
        data = blob.download_as_bytes()
        sizes[blob.name] = (len(data), data.count(b"\n"))
    alone = [name for name, (size, lines) in sizes.items() if size > 10_000]
    assert len(alone) == 1 and sizes[alone[0]][1] == 1
    assert len(sizes) > 20  # every other part cut at an event, under the bound
    warnings = [line for line in result.logs if "written alone" in line["message"]]
    assert len(warnings) == 1 and warnings[0]["audit_id"] == huge["auditId"]
    assert_exactly_once(bucket, ids(events))
