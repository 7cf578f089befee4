"""What Cloud Storage, or someone with access to the bucket, can do to a run: the checkpoint
deleted under it, data objects without a checkpoint, a storm of 503s, a refused write,
objects too large to read. Each ends exactly once, or fails loudly in one line with the
lease released (or, when even that write fails, expiring) and no continuation."""

import json
import time

import pytest
from google.api_core.exceptions import Forbidden
from google.auth.transport.requests import AuthorizedSession
from google.cloud.storage import Blob
from requests import Response
from support import HOUR_MS, STATE_KEY, assert_exactly_once, publish, state_of

from devtools.sample_events import generate_events
from harness_audit.checkpoint import MAX_STATE_BYTES
from harness_audit.sink import MAX_PART_BYTES, ObjectSink, object_name

pytestmark = pytest.mark.integration

MAX_RUN_SECONDS = 10
LEASE_SECONDS = MAX_RUN_SECONDS + 60


def data_objects(bucket) -> list[str]:
    return sorted(blob.name for blob in bucket.list_blobs(prefix="harness/audit/"))


def elapsed_of(clock, invoke):
    started = clock.monotonic()
    result = invoke()
    return result, clock.monotonic() - started


def test_checkpoint_deleted_mid_run_is_recreated_and_nothing_is_written_twice(
    start_instance, harness, clock, bucket, mocker
):
    t0 = clock.now_ms()
    events = generate_events(600, t0 - HOUR_MS, t0, seed=81)
    publish(harness, events)
    instance = start_instance(MAX_OBJECT_MB=0.05, MAX_RUN_SECONDS=MAX_RUN_SECONDS)
    real_create = ObjectSink.create

    def create_then_reset(self, name, *args, **kwargs):
        created = real_create(self, name, *args, **kwargs)
        if name.endswith("-0002.jsonl"):  # a person resets the checkpoint mid-run
            bucket.blob(STATE_KEY).delete()
        return created

    mocker.patch.object(ObjectSink, "create", create_then_reset)
    result, elapsed = elapsed_of(clock, instance.invoke)
    assert elapsed <= MAX_RUN_SECONDS
    assert result.status == 200, result.logs
    assert result.summary["window_complete"] is True
    everything = json.dumps(result.logs)
    assert "another run" not in everything
    recreated = [line for line in result.logs if "deleted during the run" in line["message"]]
    assert len(recreated) == 1 and recreated[0]["severity"] == "WARNING"
    state = state_of(bucket)
    assert state["lease"] is None and state["watermark_ms"] == t0
    assert_exactly_once(bucket, [event["auditId"] for event in events])
    clock.advance(3600)
    assert instance.invoke().summary["events_written"] == 0
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_data_objects_without_a_checkpoint_fail_loudly_naming_the_reset(
    start_instance, harness, clock, bucket
):
    t0 = clock.now_ms()
    publish(harness, generate_events(50, t0 - HOUR_MS, t0, seed=82))
    earlier = object_name("harness/audit", t0 - 2 * HOUR_MS, t0 - HOUR_MS, 1)
    bucket.blob(earlier).upload_from_string(b'{"auditId":"old","timestamp":1}\n')
    result = start_instance().invoke()
    assert result.status == 500
    summary = result.summary
    assert summary["error"] == "StateMissing" and summary["severity"] == "ERROR"
    message = summary["message"]
    assert f"gs://{bucket.name}/{earlier}" in message
    recipe = '{"version": 2, "watermark_ms": <epoch ms to resume from>}'
    assert f"write {recipe} to gs://{bucket.name}/{STATE_KEY}" in message
    assert "Traceback" not in result.stderr
    assert state_of(bucket) is None and data_objects(bucket) == [earlier]
    assert harness.requests == []


class RealTime:
    """The real clock from the fixture's start: the library's own retry waits in real time."""

    def __init__(self, start_ms: int):
        self._start_ms, self._started = start_ms, time.monotonic()

    def now_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._started) * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def answer_503_to_checkpoint_writes(mocker, after: int) -> list[str]:
    """Cloud Storage answers 503 to every upload of the checkpoint after the first ``after``,
    at the HTTP layer: google-cloud-storage's own retry runs, on the real clock."""
    real_request = AuthorizedSession.request
    attempts = []

    def request(self, method, url, data=None, **kwargs):
        if method == "POST" and "/upload/" in url and STATE_KEY.encode() in (data or b""):
            attempts.append(url)
            if len(attempts) > after:
                response = Response()
                response.status_code, response._content = 503, b"backend unavailable"
                response.url, response.request = url, None
                return response
        return real_request(self, method, url, data=data, **kwargs)

    mocker.patch.object(AuthorizedSession, "request", request)
    return attempts


@pytest.mark.parametrize("lease_taken", [True, False], ids=["after-the-lease", "from-the-start"])
def test_a_503_storm_on_checkpoint_writes_ends_within_the_budget(
    start_instance, harness, clock, bucket, mocker, lease_taken
):
    """Every checkpoint write answers 503 (after the lease's, or from the start): the run
    fails within MAX_RUN_SECONDS plus a small margin, in one summary line, leaving no
    lease or one that expires on its own."""
    t0 = clock.now_ms()
    publish(harness, generate_events(400, t0 - HOUR_MS, t0, seed=83))
    instance = start_instance(MAX_RUN_SECONDS=MAX_RUN_SECONDS, MAX_OBJECT_MB=0.05)
    instance.module.CLOCK = RealTime(t0)
    attempts = answer_503_to_checkpoint_writes(mocker, after=int(lease_taken))
    started = time.monotonic()
    result = instance.invoke()
    elapsed = time.monotonic() - started
    assert elapsed < MAX_RUN_SECONDS + 2, elapsed
    assert len(attempts) - int(lease_taken) >= 2  # the library retried, in the run's time
    assert result.status == 500
    summary = result.summary
    assert summary["outcome"] == "failed" and summary["error"] == "StorageUnavailable"
    assert "write the checkpoint" in summary["message"]
    mocker.stopall()
    state = state_of(bucket)
    if not lease_taken:
        assert state is None and harness.requests == [] and data_objects(bucket) == []
        return
    assert summary["events_written"] > 0
    warning = [line for line in result.logs if "could not release the lease" in line["message"]]
    assert len(warning) == 1
    # The lease taken at the start is all that landed: it expires on its own.
    assert t0 < state["lease"]["expires_ms"] <= t0 + LEASE_SECONDS * 1000 + 1000
    assert state["window"]["next_part"] == 1 and state["watermark_ms"] is None


def test_a_refused_write_releases_the_lease_and_the_next_run_collects(
    start_instance, harness, clock, bucket, mocker
):
    t0 = clock.now_ms()
    events = generate_events(500, t0 - HOUR_MS, t0, seed=84)
    publish(harness, events)
    instance = start_instance(MAX_RUN_SECONDS=MAX_RUN_SECONDS, MAX_OBJECT_MB=0.05)
    real_upload = Blob.upload_from_string

    def refused(self, *args, **kwargs):
        if self.name.startswith("harness/audit/"):  # the role allows the checkpoint only
            raise Forbidden("storage.objects.create denied")
        return real_upload(self, *args, **kwargs)

    mocker.patch.object(Blob, "upload_from_string", refused)
    result, elapsed = elapsed_of(clock, instance.invoke)
    assert elapsed <= MAX_RUN_SECONDS
    assert result.status == 500
    assert result.summary["error"] == "StorageRejected"
    assert "roles/storage.objectUser" in result.summary["message"]
    state = state_of(bucket)
    assert state["lease"] is None and state["watermark_ms"] is None
    mocker.stopall()
    # The role fixed: the very next run collects, instead of finding the lease held.
    result = instance.invoke()
    assert result.status == 200 and result.summary["outcome"] == "ok", result.logs
    assert result.summary["window_complete"] is True
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_an_object_too_large_for_a_part_is_refused_unread(
    start_instance, harness, clock, bucket, mocker
):
    t0 = clock.now_ms()
    publish(harness, generate_events(100, t0 - HOUR_MS, t0, seed=85))
    name = object_name("harness/audit", t0 - HOUR_MS, t0, 1)
    bucket.blob(name).upload_from_string(b"x" * (MAX_PART_BYTES + 1))
    # A checkpoint of the window that part belongs to: a run that died after writing it.
    window = {"start_ms": t0 - HOUR_MS, "end_ms": t0, "lower_ms": t0 - HOUR_MS, "upper_ms": t0}
    window |= {"burst_pass": 1, "next_part": 1, "pages": 0, "events_written": 0}
    bucket.blob(STATE_KEY).upload_from_string(json.dumps({"version": 2, "window": window}))
    downloads = mocker.spy(Blob, "download_as_bytes")
    result = start_instance().invoke()
    assert result.status == 500
    summary = result.summary
    assert summary["error"] == "ForeignObject"
    assert f"gs://{bucket.name}/{name} is {MAX_PART_BYTES + 1} bytes" in summary["message"]
    assert "gcloud storage mv" in summary["message"]
    assert all(call.args[0].name != name for call in downloads.call_args_list)
    assert state_of(bucket)["lease"] is None


def test_a_checkpoint_too_large_is_refused_unread(start_instance, harness, clock, bucket, mocker):
    t0 = clock.now_ms()
    publish(harness, generate_events(10, t0 - HOUR_MS, t0, seed=86))
    padding = " " * MAX_STATE_BYTES
    data = f'{{"version": 2, "watermark_ms": {t0 - HOUR_MS}}}{padding}'.encode()
    bucket.blob(STATE_KEY).upload_from_string(data)
    downloads = mocker.spy(Blob, "download_as_bytes")
    result = start_instance().invoke()
    assert result.status == 500
    assert result.summary["error"] == "StateCorrupt"
    assert f"it is {len(data)} bytes, larger than any checkpoint" in result.summary["message"]
    assert downloads.call_count == 0
    assert harness.requests == [] and data_objects(bucket) == []
