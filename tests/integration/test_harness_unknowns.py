"""What Harness's API may do that nothing documents (issue 19): pages capped below PAGE_SIZE,
listV2's cursor under another name, timestamps as strings or floats, a cursor that never
ends, one auditId at two timestamps. Each ends exactly once or fails loudly (HTTP 500, one
ERROR line naming what Harness did), never "ok" with a loss. Black-box: the function
through functions-framework, the objects in the bucket by auditId, the status, the log."""

import json

import pytest
from support import ACCOUNT, API_KEY, HOUR_MS, MIN_MS, assert_exactly_once, publish, written_events

from devtools.harness_simulator import HarnessSimulator
from devtools.hostile_harness import HostileHarness
from devtools.sample_events import generate_burst, generate_events

pytestmark = pytest.mark.integration


@pytest.fixture
def simulator(clock, environment):
    started = []

    def start(**mode) -> HarnessSimulator:
        sim = HarnessSimulator(
            account_id=ACCOUNT, api_key=API_KEY, clock_ms=clock.now_ms, sleep=clock.sleep, **mode
        )
        sim.start()
        started.append(sim)
        environment.setenv("HARNESS_API_BASE", sim.url)
        return sim

    yield start
    for sim in started:
        sim.stop()


def ids(events) -> list[str]:
    return [event["auditId"] for event in events]


def one_loud_failure(result, *words) -> str:
    assert result.status == 500, result.logs
    assert result.summary["severity"] == "ERROR" and result.summary["outcome"] != "ok"
    errors = [line for line in result.logs if line["severity"] == "ERROR"]
    assert len(errors) == 1, errors
    for word in words:
        assert word in errors[0]["message"], errors[0]["message"]
    return errors[0]["message"]


def no_duplicates(bucket) -> list[str]:
    written = ids(written_events(bucket))
    assert len(written) == len(set(written))
    return written


def backlog(t0: int, seed: int, burst: int = 0) -> list[dict]:
    events = generate_events(600, t0 - HOUR_MS, t0, seed=seed)
    return events + (generate_burst(burst, t0 - 20 * MIN_MS, seed=seed + 1) if burst else [])


@pytest.mark.parametrize("listv2", [True, False], ids=["listV2", "list"])
def test_pages_capped_below_page_size_lose_nothing(
    start_instance, simulator, clock, bucket, listv2
):
    sim = simulator(page_cap=50, listv2_enabled=listv2)
    events = backlog(clock.now_ms(), seed=31, burst=40)  # a burst under the cap
    publish(sim, events)
    result = start_instance(PAGE_SIZE=100).invoke()
    assert result.status == 200 and result.summary["window_complete"], result.logs
    assert_exactly_once(bucket, ids(events))


def test_a_millisecond_over_a_list_cap_fails_loudly_until_page_size_matches_it(
    start_instance, simulator, clock, bucket
):
    # list starts page 1 at 100 while serving 50 a page: events 50-99 of the millisecond
    # could never be read. The run says so, and how to fix it.
    sim = simulator(page_cap=50, listv2_enabled=False)
    events = backlog(clock.now_ms(), seed=32, burst=120)
    publish(sim, events)
    failed = start_instance(PAGE_SIZE=100).invoke()
    one_loud_failure(failed, "caps its pages", "set PAGE_SIZE to 50")
    assert len(no_duplicates(bucket)) < len(events)
    fixed = start_instance(PAGE_SIZE=50).invoke()
    assert fixed.status == 200 and fixed.summary["window_complete"], fixed.logs
    assert_exactly_once(bucket, ids(events))


def test_the_cursor_under_another_name_fails_a_burst_loudly(
    start_instance, simulator, clock, bucket
):
    sim = simulator(cursor_field="nextPageToken")
    quiet = generate_events(300, clock.now_ms() - 2 * HOUR_MS, clock.now_ms() - HOUR_MS, seed=33)
    publish(sim, quiet)
    clock.advance(-3600)
    instance = start_instance(PAGE_SIZE=50)
    # Paging by time needs no cursor: without a burst, every event once.
    first = instance.invoke()
    assert first.status == 200, first.logs
    assert_exactly_once(bucket, ids(quiet))
    clock.advance(3600)
    burst = generate_burst(250, clock.now_ms() - 20 * MIN_MS, seed=34)
    publish(sim, burst)
    second = instance.invoke()
    one_loud_failure(second, "says there is more but names no page token")
    assert "settled" not in json.dumps(second.logs)
    no_duplicates(bucket)


@pytest.mark.parametrize("timestamps", ["string", "float", "mixed"])
def test_string_and_float_timestamps_are_the_milliseconds_they_denote(
    start_instance, simulator, clock, bucket, timestamps
):
    sim = simulator(timestamps=timestamps)
    events = backlog(clock.now_ms(), seed=35, burst=130)
    publish(sim, events)
    result = start_instance(PAGE_SIZE=50).invoke()
    assert result.status == 200 and result.summary["window_complete"], result.logs
    assert not result.summary.get("events_rejected")
    assert_exactly_once(bucket, ids(events))


def test_an_event_that_cannot_be_placed_in_time_fails_the_run(
    start_instance, harness, environment, clock, bucket
):
    events = generate_events(200, clock.now_ms() - 30 * MIN_MS, clock.now_ms(), seed=36)
    publish(harness, events)
    with HostileHarness("unplaceable_timestamp", delegate=harness, at_requests={2}) as hostile:
        environment.setenv("HARNESS_API_BASE", hostile.url)
        result = start_instance(PAGE_SIZE=50).invoke()
    message = one_loud_failure(result, "a string timestamp", "a person must look")
    assert "2025-06-10T12:00:00Z" not in message  # its type is named, not its value
    no_duplicates(bucket)


def test_an_endless_cursor_fails_within_the_run(start_instance, simulator, clock, bucket):
    sim = simulator(endless_cursor=True)
    events = backlog(clock.now_ms(), seed=37, burst=250)
    publish(sim, events)
    instance = start_instance(PAGE_SIZE=50, MAX_RUN_SECONDS=300)
    started = clock.monotonic()
    for _ in range(2):  # every run, never a deadline reached with "ok"
        result = instance.invoke()
        one_loud_failure(result, "repeated the page cursor")
    assert clock.monotonic() - started < 60
    assert sim.listing_requests < 60
    no_duplicates(bucket)


def test_one_audit_id_at_two_timestamps_far_apart_is_written_at_each(
    start_instance, simulator, clock, bucket
):
    """auditId is Harness's unique key, so a second copy at another millisecond is outside
    its contract. Paging drops a copy it meets on the same page or at the edge it carries;
    copies further apart are each written once, as received, and verify reports the id as
    duplicated. Nothing is lost either way."""
    sim = simulator(unique_ids=False)
    t0 = clock.now_ms()
    events = generate_events(300, t0 - HOUR_MS, t0, seed=38)
    twin = dict(events[250], timestamp=events[250]["timestamp"] - 40 * MIN_MS)
    publish(sim, [*events, twin])
    result = start_instance(PAGE_SIZE=50).invoke()
    assert result.status == 200, result.logs
    written = [(e["auditId"], e["timestamp"]) for e in written_events(bucket)]
    expected = [(e["auditId"], e["timestamp"]) for e in [*events, twin]]
    assert sorted(written) == sorted(expected)
