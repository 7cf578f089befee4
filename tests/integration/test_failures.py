"""Failures a person must fix, and those the next run recovers from: each fails clearly,
writes nothing it should not, and leaves the checkpoint as it was."""

import json
from types import SimpleNamespace

import pytest
from support import (
    API_KEY,
    HOUR_MS,
    STATE_KEY,
    assert_exactly_once,
    content_of,
    publish,
    state_of,
)

from devtools.sample_events import generate_events

pytestmark = pytest.mark.integration


def data_objects(bucket):
    return sorted(blob.name for blob in bucket.list_blobs(prefix="harness/audit/"))


def snapshot(bucket):
    blob = bucket.get_blob(STATE_KEY)
    state = None if blob is None else (blob.generation, blob.download_as_bytes())
    return state, data_objects(bucket)


@pytest.mark.parametrize(
    ("fault", "status", "code", "words"),
    [
        ("401", 401, "INVALID_TOKEN", ["Token is not valid.", "HARNESS_API_KEY"]),
        ("403", 403, "ACCESS_DENIED", ["core_audit_view", "Audit View"]),
    ],
)
def test_rejected_key_fails_clearly_and_touches_nothing(
    start_instance, harness, clock, bucket, fault, status, code, words
):
    t0 = clock.now_ms()
    publish(harness, generate_events(150, t0 - 2 * HOUR_MS, t0, seed=11))
    instance = start_instance()
    clock.advance(-3600)
    assert instance.invoke().status == 200  # an earlier good run: there is a checkpoint
    clock.advance(3600)
    before = content_of(bucket), data_objects(bucket)
    earlier_requests = len(harness.requests)
    harness.inject(fault)
    result = instance.invoke()
    assert result.status == 500
    errors = [line for line in result.logs if line["severity"] == "ERROR"]
    assert len(errors) == 1
    message = errors[0]["message"]
    assert f"HTTP {status} {code}" in message
    for word in words:
        assert word in message
    # The lease was taken before the request, and released with the checkpoint as it was.
    assert (content_of(bucket), data_objects(bucket)) == before
    assert state_of(bucket)["lease"] is None
    assert len(harness.requests) == earlier_requests + 1  # no retry of a rejection


def test_rejected_key_from_the_start_names_the_status(start_instance, harness, environment, bucket):
    environment.setenv("HARNESS_API_KEY", "pat.wrong.key.value")
    result = start_instance().invoke()
    assert result.status == 500
    assert "HTTP 401 INVALID_TOKEN" in result.summary["message"]
    # Nothing delivered, nothing planned, no lease left: the next run starts as this one did.
    assert content_of(bucket) == {
        "version": 2,
        "watermark_ms": None,
        "delivered": {},
        "window": None,
    }
    assert state_of(bucket)["lease"] is None and data_objects(bucket) == []


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"version": 7}',
        b"",
        b'{"since": "last tuesday"}',
        b'{"version": 1, "watermark_ms": "x"}',
    ],
)
def test_corrupt_state_fails_loudly_and_is_never_overwritten(
    start_instance, harness, clock, bucket, content
):
    t0 = clock.now_ms()
    publish(harness, generate_events(50, t0 - HOUR_MS, t0, seed=12))
    bucket.blob(STATE_KEY).upload_from_string(content)
    before = snapshot(bucket)
    instance = start_instance()
    for _ in range(2):
        result = instance.invoke()
        assert result.status == 500
        message = result.summary["message"]
        assert "cannot be used" in message and "left as it is" in message
        assert f"gcloud storage cat gs://{bucket.name}/{STATE_KEY}" in message
        assert "delete it to start again" in message
        assert result.summary["error"] == "StateCorrupt"
    assert snapshot(bucket) == before
    assert harness.requests == []  # nothing collected on a state we cannot trust


def test_configuration_error_names_the_variable(start_instance, environment, harness):
    environment.delenv("GCS_BUCKET")
    environment.setenv("PAGE_SIZE", "1000")
    result = start_instance().invoke()
    assert result.status == 500
    message = result.summary["message"]
    assert "GCS_BUCKET is not set" in message and "PAGE_SIZE=1000 is out of range" in message
    assert harness.requests == []


def test_api_key_never_appears_in_any_log_line(start_instance, harness, clock, bucket, environment):
    t0 = clock.now_ms()
    publish(harness, generate_events(300, t0 - HOUR_MS, t0, seed=13))
    environment.setenv("STATE_KEY", "harness/audit/state.json")  # a warning at start-up
    instance = start_instance(PAGE_SIZE=100, MAX_RETRIES=2)
    harness.inject("429", "cut", "truncated_200", "503_html", "503_html", "503_html")
    outputs = []
    for _ in range(3):
        result = instance.invoke()
        outputs.append(json.dumps(result.logs) + result.stderr)
        clock.advance(3600)
    harness.inject("401")
    result = instance.invoke()
    outputs.append(json.dumps(result.logs) + result.stderr)
    everything = "".join(outputs)
    assert "retrying a Harness request" in everything
    assert "HTTP 401" in everything
    assert "STATE_KEY" in everything
    secret = API_KEY.rsplit(".", 1)[-1]
    assert API_KEY not in everything
    assert secret not in everything


def test_storage_outage_fails_the_run_and_the_next_one_recovers(
    start_instance, harness, clock, bucket, mocker
):
    from google.api_core.exceptions import ServiceUnavailable
    from google.cloud.storage import Blob

    t0 = clock.now_ms()
    events = generate_events(400, t0 - HOUR_MS, t0, seed=14)
    publish(harness, events)
    instance = start_instance(MAX_OBJECT_MB=0.1)
    real_upload = Blob.upload_from_string
    data_uploads = []

    def upload(self, *args, **kwargs):
        if self.name.startswith("harness/audit/"):
            data_uploads.append(self.name)
            if len(data_uploads) == 2:  # still failing once the library's retries gave up
                raise ServiceUnavailable("backend unavailable")
        return real_upload(self, *args, **kwargs)

    mocker.patch.object(Blob, "upload_from_string", upload)
    result = instance.invoke()
    assert result.status == 500
    assert result.summary["error"] == "StorageUnavailable"
    assert "Cloud Storage failed" in result.summary["message"]
    mocker.stopall()
    clock.advance(3600)
    assert instance.invoke().status == 200
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_a_412_on_our_own_retried_checkpoint_write_is_recognised(bucket, mocker):
    """A checkpoint write whose response was lost is retried by the library and meets 412:
    the object then holds exactly our bytes, and that is success, not a lost lease."""
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud.storage import Blob

    from harness_audit.checkpoint import CheckpointStore
    from harness_audit.errors import LeaseLost
    from harness_audit.state import State

    config = SimpleNamespace(state_key=STATE_KEY, max_run_seconds=480)  # a 540 s lease
    store = CheckpointStore(config, bucket)
    generation = store.save(State(watermark_ms=1), 0, now_ms=1)
    real_upload = Blob.upload_from_string

    def landed_then_lost(self, *args, **kwargs):
        real_upload(self, *args, **kwargs)
        raise PreconditionFailed("the retry of a write that had landed")

    mocker.patch.object(Blob, "upload_from_string", landed_then_lost)
    new_generation = store.save(State(watermark_ms=2), generation, now_ms=2)
    assert new_generation == bucket.get_blob(STATE_KEY).generation != generation
    # Someone else's write, on the other hand, is a lost lease.
    mocker.stopall()
    bucket.blob(STATE_KEY).upload_from_string(b'{"version": 1, "watermark_ms": 3}')
    with pytest.raises(LeaseLost):
        store.save(State(watermark_ms=4), new_generation, now_ms=4)
