"""Continuation: a run stopped by its deadline after progress publishes one message to its
own trigger topic, and the run it starts (delivered by the fake Pub/Sub endpoint to the
same instance) resumes at once; nothing else ever publishes."""

import base64
import json

import pytest
from support import HOUR_MS, MIN_MS, STATE_KEY, assert_exactly_once, publish, state_of

from devtools.sample_events import generate_burst, generate_events

pytestmark = pytest.mark.integration

TOPIC = "projects/local-project/topics/harness-audit-trigger"


def start_continuing(start_instance, pubsub, **env):
    return start_instance(TRIGGER_TOPIC=TOPIC, PUBSUB_EMULATOR_HOST=pubsub.host, **env)


def deliver_all(instance, pubsub, limit: int = 20) -> list:
    """Deliver each published message as a new invocation, until none is left."""
    runs = []
    while messages := pubsub.take():
        assert len(messages) == 1, "one message per run"
        runs.append(instance.invoke(messages[0].event()))
        assert len(runs) < limit, "continuations did not stop"
    return runs


def backlog(harness, clock, count=5_000, seed=31):
    t0 = clock.now_ms()
    events = generate_events(count, t0 - HOUR_MS, t0, seed=seed)
    publish(harness, events)
    harness.latency_s = 5.0  # on the fake clock: about ten pages per 60 s run
    return events


def test_backlog_drains_from_one_trigger(start_instance, harness, clock, bucket, pubsub):
    events = backlog(harness, clock)
    instance = start_continuing(start_instance, pubsub, MAX_RUN_SECONDS=60)
    started_ms = clock.now_ms()
    first = instance.invoke()
    runs = [first, *deliver_all(instance, pubsub)]
    summaries = [run.summary for run in runs]
    assert all(run.status == 200 for run in runs)
    assert len(runs) >= 4
    for summary in summaries[:-1]:
        assert summary["outcome"] == "ok" and summary["stopped_by"] == "deadline"
        assert summary["continuation"] == "published"
        assert "continues in a run started now" in summary["message"]
    last = summaries[-1]
    assert last["window_complete"] is True and last["continuation"] == "not needed"
    # Every continuation started a run that found the lease free and resumed the window.
    assert all(summary["resumed"] for summary in summaries[1:])
    assert all(summary["trigger_reason"] == "continue" for summary in summaries[1:])
    assert "trigger_reason" not in summaries[0]
    assert len(pubsub.published) == len(runs) - 1
    assert_exactly_once(bucket, [event["auditId"] for event in events])
    state = state_of(bucket)
    assert state["lease"] is None and state["window"] is None
    # Drained within the time the runs themselves took: no scheduled trigger was waited for.
    assert clock.now_ms() - started_ms < len(runs) * 61_000


def test_no_continuation_when_the_saved_position_did_not_move(
    start_instance, harness, clock, bucket, pubsub
):
    """A millisecond holding more events than a run can page through: each run restarts
    its pass (a burst's cursor is not saved) and gets one page further, until the pass is
    longer than a run. That run's saved position does not move, and it publishes nothing."""
    t0 = clock.now_ms()
    publish(harness, generate_burst(1_500, t0 - 30 * MIN_MS, seed=35))
    harness.latency_s = 5.0  # on the fake clock: four pages per 30 s run
    instance = start_continuing(start_instance, pubsub, MAX_RUN_SECONDS=30)
    runs = [instance.invoke(), *deliver_all(instance, pubsub)]
    summaries = [run.summary for run in runs]
    assert all(summary["stopped_by"] == "deadline" for summary in summaries)
    for summary in summaries[:-1]:
        assert summary["position_moved"] is True and summary["continuation"] == "published"
    last = summaries[-1]
    assert last["outcome"] == "ok" and last["pages"] > 0 and last["events_written"] == 0
    assert last["position_moved"] is False and last["continuation"] == "not needed"
    assert "continues at the next trigger" in last["message"]
    assert len(pubsub.published) == len(runs) - 1 < 5


def test_continuation_message_carries_the_window(start_instance, harness, clock, pubsub):
    backlog(harness, clock, count=2_000)
    instance = start_continuing(start_instance, pubsub, MAX_RUN_SECONDS=30)
    summary = instance.invoke().summary
    assert summary["continuation"] == "published"
    [message] = pubsub.take()
    assert message.topic_name == TOPIC
    assert message.data == b"{}"
    assert message.attributes == {
        "reason": "continue",
        "window_start": summary["window_start"],
        "window_end": summary["window_end"],
    }
    assert message.authorization is None  # an emulator is never sent credentials
    published = [line for line in instance.calls[-1].logs if "published" in line["message"]]
    assert published[0]["message_id"] == message.message_id
    # The CloudEvent it is delivered as, as Eventarc shapes it.
    headers, body = message.event()
    assert headers["ce-id"] == message.message_id
    delivered = json.loads(body)["message"]
    assert delivered["attributes"]["reason"] == "continue"
    assert base64.b64decode(delivered["data"]) == b"{}"


def test_completed_window_publishes_nothing(start_instance, harness, clock, bucket, pubsub):
    t0 = clock.now_ms()
    publish(harness, generate_events(500, t0 - HOUR_MS, t0, seed=32))
    instance = start_continuing(start_instance, pubsub)
    summary = instance.invoke().summary
    assert summary["window_complete"] is True
    assert summary["continuation"] == "not needed"
    assert pubsub.attempts == 0


def test_without_a_topic_the_window_waits_for_the_next_trigger(
    start_instance, harness, clock, pubsub
):
    backlog(harness, clock, count=2_000)
    instance = start_instance(MAX_RUN_SECONDS=30, PUBSUB_EMULATOR_HOST=pubsub.host)
    result = instance.invoke()
    assert result.status == 200
    summary = result.summary
    assert summary["stopped_by"] == "deadline" and summary["continuation"] == "not configured"
    assert "continues at the next trigger (TRIGGER_TOPIC is not set)" in summary["message"]
    assert pubsub.attempts == 0


def test_failed_run_publishes_nothing(start_instance, harness, clock, bucket, pubsub):
    t0 = clock.now_ms()
    publish(harness, generate_events(500, t0 - HOUR_MS, t0, seed=33))
    harness.inject("latency:0", "401")  # one page, then the key is refused
    instance = start_continuing(start_instance, pubsub, PAGE_SIZE=100)
    result = instance.invoke()
    assert result.status == 500
    assert result.summary["outcome"] == "failed" and result.summary["pages"] == 1
    assert "continuation" not in result.summary
    assert pubsub.attempts == 0


def test_run_finding_the_lease_held_publishes_nothing(
    start_instance, harness, clock, bucket, pubsub
):
    t0 = clock.now_ms()
    publish(harness, generate_events(100, t0 - HOUR_MS, t0, seed=34))
    lease = (
        b'{"version":2,"watermark_ms":null,"delivered":{},"window":null,'
        b'"lease":{"owner":"another-run","expires_ms":%d}}' % (t0 + 60_000)
    )
    bucket.blob(STATE_KEY).upload_from_string(lease)
    result = start_continuing(start_instance, pubsub).invoke()
    assert result.status == 200 and result.summary["outcome"] == "skipped"
    assert pubsub.attempts == 0


def test_run_without_a_page_publishes_nothing(start_instance, harness, clock, bucket, pubsub):
    backlog(harness, clock, count=500)
    harness.latency_s = 8.0  # longer than a 10 s run's 5 s of paging
    result = start_continuing(start_instance, pubsub, MAX_RUN_SECONDS=10).invoke()
    assert result.status == 500
    assert result.summary["error"] == "NoProgress" and result.summary["pages"] == 0
    assert pubsub.attempts == 0


@pytest.mark.parametrize(("status", "attempts"), [(503, 3), (403, 1)])
def test_failing_publish_is_a_warning_and_the_run_succeeds(
    start_instance, harness, clock, bucket, pubsub, status, attempts
):
    backlog(harness, clock, count=2_000)
    pubsub.fail_with(status)
    instance = start_continuing(start_instance, pubsub, MAX_RUN_SECONDS=30)
    result = instance.invoke()
    assert result.status == 200
    summary = result.summary
    assert summary["outcome"] == "ok" and summary["continuation"] == "failed"
    assert "the continuation was not published" in summary["message"]
    [warning] = [line for line in result.logs if line["severity"] == "WARNING"]
    assert "could not publish the continuation" in warning["message"]
    assert f"HTTP {status}" in warning["message"]
    assert pubsub.attempts == attempts  # 5xx retried twice, a refusal not at all
    # The checkpoint was kept: the next scheduled run resumes the window.
    state = state_of(bucket)
    assert state["lease"] is None and state["window"] is not None


def test_publish_recovering_after_a_5xx_is_published(start_instance, harness, clock, pubsub):
    backlog(harness, clock, count=2_000)
    pubsub.fail_with(500, times=1)
    result = start_continuing(start_instance, pubsub, MAX_RUN_SECONDS=30).invoke()
    assert result.summary["continuation"] == "published"
    assert pubsub.attempts == 2 and len(pubsub.published) == 1
