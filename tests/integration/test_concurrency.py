"""One run at a time, and no loss or duplicate when a run dies at any point."""

import threading

import pytest
from support import ACCOUNT, API_KEY, HOUR_MS, STATE_KEY, assert_exactly_once, publish, state_of

from devtools.cloudevents import scheduler_event
from devtools.harness_simulator import HarnessSimulator
from devtools.sample_events import generate_events
from harness_audit.checkpoint import CheckpointStore
from harness_audit.sink import ObjectSink

pytestmark = pytest.mark.integration
LEASE_EXPIRY_SECONDS = 480 + 60 + 1


@pytest.mark.parametrize("invocations", [2, 3])
def test_simultaneous_invocations_write_once(
    start_instance, environment, clock, bucket, invocations
):
    t0 = clock.now_ms()
    events = generate_events(1_000, t0 - HOUR_MS, t0, seed=21)
    # Real (small) latency so that the invocations truly overlap.
    with HarnessSimulator(
        account_id=ACCOUNT, api_key=API_KEY, clock_ms=clock.now_ms, latency_s=0.02
    ) as slow_harness:
        publish(slow_harness, events)
        environment.setenv("HARNESS_API_BASE", slow_harness.url)
        instance = start_instance()
        barrier = threading.Barrier(invocations)
        statuses = []

        def invoke():
            headers, body = scheduler_event()
            client = instance.app.test_client()
            barrier.wait()
            statuses.append(client.post("/", headers=headers, data=body).status_code)

        threads = [threading.Thread(target=invoke) for _ in range(invocations)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    out = instance.capsys.readouterr().out
    assert statuses == [200] * invocations
    assert out.count('"outcome": "ok"') == 1
    assert out.count('"outcome": "skipped"') == invocations - 1
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_invocation_during_a_live_lease_touches_nothing(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    publish(harness, generate_events(100, t0 - HOUR_MS, t0, seed=22))
    lease = (
        b'{"version":2,"watermark_ms":null,"delivered":{},"window":null,'
        b'"lease":{"owner":"another-run","expires_ms":%d}}' % (t0 + 60_000)
    )
    bucket.blob(STATE_KEY).upload_from_string(lease)
    generation = bucket.get_blob(STATE_KEY).generation
    result = start_instance().invoke()
    assert result.status == 200
    assert len(result.logs) == 1 and result.logs[0]["outcome"] == "skipped"
    assert "another run holds the lease" in result.logs[0]["message"]
    assert bucket.get_blob(STATE_KEY).generation == generation
    assert harness.requests == []
    assert list(bucket.list_blobs(prefix="harness/audit/")) == []


class SimulatedKill(BaseException):
    """The process dies: no except-Exception handler, no finally that writes, runs."""


def die_on_call(mocker, cls, method, call_number, after=False):
    real = getattr(cls, method)
    calls = {"n": 0}

    def wrapper(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call_number and not after:
            raise SimulatedKill(f"{method} #{call_number}")
        result = real(self, *args, **kwargs)
        if calls["n"] == call_number:
            raise SimulatedKill(f"after {method} #{call_number}")
        return result

    return mocker.patch.object(cls, method, wrapper)


@pytest.mark.parametrize(
    ("method", "cls", "call_number", "after", "finds_written_part", "holds_lease"),
    [
        ("save", CheckpointStore, 1, False, False, False),  # dies taking the lease
        ("save", CheckpointStore, 2, False, True, True),  # part 1 written, its checkpoint not
        ("save", CheckpointStore, 3, False, True, True),
        ("save", CheckpointStore, 3, True, False, True),  # checkpoint landed, then died
        ("save", CheckpointStore, 5, False, True, True),  # the window's last checkpoint not written
        ("create", ObjectSink, 2, True, True, True),  # part 2 landed, died before its checkpoint
        ("create", ObjectSink, 1, False, False, True),
    ],
)
def test_killed_at_any_step_the_next_runs_deliver_exactly_once(
    start_instance,
    harness,
    clock,
    bucket,
    mocker,
    method,
    cls,
    call_number,
    after,
    finds_written_part,
    holds_lease,
):
    t0 = clock.now_ms()
    events = generate_events(1_200, t0 - HOUR_MS, t0, seed=23)
    publish(harness, events)
    instance = start_instance(MAX_OBJECT_MB=0.15, START_MINUTES_BACK=120)
    die_on_call(mocker, cls, method, call_number, after)
    with pytest.raises(SimulatedKill):
        instance.invoke()
    mocker.stopall()
    instance.capsys.readouterr()

    # A new instance (the old one died). Within the dead run's lease: nothing happens.
    instance = start_instance(MAX_OBJECT_MB=0.15, START_MINUTES_BACK=120)
    state = state_of(bucket)
    if holds_lease:
        assert state is not None and state["lease"] is not None
        before = bucket.get_blob(STATE_KEY).generation
        assert instance.invoke().logs[0]["outcome"] == "skipped"
        assert bucket.get_blob(STATE_KEY).generation == before
    else:
        # Died before its first checkpoint: nothing written, nothing to honour.
        assert state is None
        assert list(bucket.list_blobs(prefix="harness/audit/")) == []
    clock.advance(LEASE_EXPIRY_SECONDS)
    result = instance.invoke()
    assert result.status == 200, result.logs
    assert result.summary["window_complete"] is True
    found = [line for line in result.logs if line["message"].startswith("part already written")]
    assert bool(found) is finds_written_part
    assert_exactly_once(bucket, [event["auditId"] for event in events])
    clock.advance(3600)
    assert instance.invoke().summary["events_written"] == 0


def test_unfinished_lease_expires_by_wall_clock_only(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    publish(harness, generate_events(10, t0 - HOUR_MS, t0, seed=24))
    lease = (
        b'{"version":2,"watermark_ms":null,"delivered":{},"window":null,'
        b'"lease":{"owner":"dead-run","expires_ms":%d}}' % (t0 - 1)
    )
    bucket.blob(STATE_KEY).upload_from_string(lease)
    result = start_instance().invoke()
    assert result.summary["outcome"] == "ok" and result.summary["events_written"] == 10
    # Taken over at once: the run waited for nothing on the clock it keeps time by.
    assert clock.slept == [] and clock.now_ms() == t0
    assert state_of(bucket)["lease"] is None


def test_resumed_run_with_smaller_parts_skips_what_the_dead_run_wrote_ahead(
    start_instance, harness, clock, bucket, mocker
):
    """The dead run wrote one big part; the run that resumes cuts smaller parts, so that part
    holds events of pages it has not fetched yet: those must be skipped when they come."""
    t0 = clock.now_ms()
    events = generate_events(1_200, t0 - HOUR_MS, t0, seed=25)
    publish(harness, events)
    instance = start_instance(MAX_OBJECT_MB=2, START_MINUTES_BACK=120)
    die_on_call(mocker, ObjectSink, "create", 1, after=True)  # part 1 landed, then death
    with pytest.raises(SimulatedKill):
        instance.invoke()
    mocker.stopall()
    clock.advance(LEASE_EXPIRY_SECONDS)
    result = start_instance(MAX_OBJECT_MB=0.1, START_MINUTES_BACK=120).invoke()
    assert result.status == 200, result.logs
    assert result.summary["events_written"] == 0
    assert_exactly_once(bucket, [event["auditId"] for event in events])
