"""Exactly once under every behaviour Harness's API may have (see harness-audit-api.md):
list sorted by timestamp alone with ties shuffled on every request, a total count that lags,
listV2 tokens as keysets or offsets, bursts in one millisecond under and over PAGE_SIZE,
either page order, records appearing while a window is paged, and an edge throttle.

Each case runs the real function through functions-framework against fake-gcs-server and
the simulator in that mode, and checks every expected auditId once across every object."""

import random

import pytest
from support import ACCOUNT, API_KEY, HOUR_MS, MIN_MS, assert_exactly_once, publish

from devtools.harness_simulator import HarnessSimulator
from devtools.sample_events import generate_burst, generate_events

pytestmark = pytest.mark.integration

PAGE_SIZE = 50

MODES = {
    "list, ties shuffled, count lagging": dict(
        listv2_enabled=False, ties="shuffled", count_lag_ms=4_000
    ),
    "listV2 offset tokens, ties shuffled": dict(listv2_tokens="offset", ties="shuffled"),
    "listV2 keyset tokens": dict(listv2_tokens="keyset"),
    "list, oldest first, ties shuffled": dict(
        listv2_enabled=False, order="oldest_first", ties="shuffled"
    ),
    "listV2 offset tokens, oldest first": dict(
        listv2_tokens="offset", order="oldest_first", ties="shuffled"
    ),
}


def bulk_changes(t0: int, seed: int) -> list[dict]:
    """Ordinary activity with bulk changes sharing one millisecond: 40 to 60 events (under
    PAGE_SIZE... and over it at 50), one of 130 and one of 260 (over it), and one burst on
    the window's very edges."""
    rng = random.Random(seed)
    events = generate_events(900, t0 - HOUR_MS, t0, seed=seed)
    for number, size in enumerate([40, 45, 50, 55, 60, 130, 260]):
        ms = t0 - HOUR_MS + rng.randrange(5 * MIN_MS, 55 * MIN_MS)
        events += generate_burst(size, ms, seed=seed * 100 + number)
    events += generate_burst(70, t0, seed=seed * 100 + 50)  # at the window's end
    events += generate_burst(70, t0 - HOUR_MS, seed=seed * 100 + 51)  # and its start
    return events


@pytest.fixture
def simulator(request, clock):
    simulator = HarnessSimulator(
        account_id=ACCOUNT,
        api_key=API_KEY,
        clock_ms=clock.now_ms,
        sleep=clock.sleep,
        seed=7,
        **request.param,
    )
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.mark.parametrize("simulator", MODES.values(), ids=MODES.keys(), indirect=True)
def test_bursts_ties_and_late_records_are_written_exactly_once(
    start_instance, environment, simulator, clock, bucket
):
    t0 = clock.now_ms()
    events = bulk_changes(t0, seed=3)
    publish(simulator, events)
    # Records that become visible while the window is being paged: stamped inside it,
    # above and below wherever paging has got to by then.
    appearing = generate_events(120, t0 - HOUR_MS, t0, seed=4)
    for number in range(6):
        simulator.add_events(
            appearing[number * 20 : (number + 1) * 20], visible_after_requests=3 + number * 7
        )
    # Later activity, for the next hourly run.
    later = generate_events(300, t0 + 1, t0 + HOUR_MS, seed=5) + generate_burst(
        120, t0 + 30 * MIN_MS, seed=6
    )
    publish(simulator, later)
    environment.setenv("HARNESS_API_BASE", simulator.url)
    # An overlap of the whole hour: the second run re-reads all of the first one's window,
    # so records that appeared above the first run's position are still in reach.
    instance = start_instance(
        PAGE_SIZE=PAGE_SIZE, START_MINUTES_BACK=60, MAX_OBJECT_MB=0.2, OVERLAP_SECONDS=3600
    )
    first = instance.invoke()
    assert first.status == 200, first.logs
    assert first.summary["window_complete"] is True
    bursts = [line for line in first.logs if "share one millisecond" in line["message"]]
    assert bursts and all(line["severity"] == "WARNING" for line in bursts)
    clock.advance(3600)
    second = instance.invoke()
    assert second.status == 200, second.logs
    # Records that appeared below the first run's position were taken by it; the ones above
    # it, by the second run's overlap.
    assert_exactly_once(bucket, [event["auditId"] for event in events + appearing + later])


@pytest.mark.parametrize(
    "simulator",
    [dict(listv2_enabled=False, ties="shuffled", count_lag_ms=60_000)],
    indirect=True,
)
def test_a_lagging_count_never_ends_paging_early(
    start_instance, environment, simulator, clock, bucket
):
    t0 = clock.now_ms()
    # Everything visible only a moment ago: the count sees none of it.
    events = generate_events(700, t0 - HOUR_MS + MIN_MS, t0, seed=8)
    simulator.add_events(events, visible_at_ms=t0)
    clock.advance(1)
    environment.setenv("HARNESS_API_BASE", simulator.url)
    result = start_instance(PAGE_SIZE=PAGE_SIZE).invoke()
    assert result.status == 200, result.logs
    assert_exactly_once(bucket, [event["auditId"] for event in events])


@pytest.mark.parametrize("simulator", [dict(throttle=(100, 10.0))], indirect=True)
def test_pacing_stays_under_an_edge_throttle(start_instance, environment, simulator, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(6_000, t0 - HOUR_MS, t0, seed=9)
    publish(simulator, events)
    environment.setenv("HARNESS_API_BASE", simulator.url)
    started = clock.monotonic()
    result = start_instance(PAGE_SIZE=PAGE_SIZE, MAX_REQUESTS_PER_MINUTE=540).invoke()
    assert result.status == 200, result.logs
    assert simulator.throttled == 0 and result.summary["retries"] == {}
    requests = result.summary["requests"]
    assert requests > 120  # more than one throttle window's worth
    # Evenly spaced at 540 a minute, on the fake clock: no slower than the pace.
    assert clock.monotonic() - started == pytest.approx((requests - 1) * 60 / 540, rel=0.01)
    assert_exactly_once(bucket, [event["auditId"] for event in events])


@pytest.mark.parametrize("simulator", [dict(throttle=(100, 10.0))], indirect=True)
def test_without_pacing_the_throttle_is_met_and_retried(
    start_instance, environment, simulator, clock, bucket
):
    """The control: without pacing the same run meets the throttle's 429s (no Retry-After),
    backs off and still loses nothing."""
    t0 = clock.now_ms()
    events = generate_events(6_000, t0 - HOUR_MS, t0, seed=9)
    publish(simulator, events)
    environment.setenv("HARNESS_API_BASE", simulator.url)
    result = start_instance(PAGE_SIZE=PAGE_SIZE, MAX_RETRIES=20).invoke()
    assert result.status == 200, result.logs
    assert simulator.throttled > 0 and result.summary["retries"]["http_429"] > 0
    assert_exactly_once(bucket, [event["auditId"] for event in events])
