"""Swapping the guide's function for this one, and the streaming output layout."""

import json

import pytest
from support import HOUR_MS, MIN_MS, STATE_KEY, assert_exactly_once, publish, state_of

from devtools.sample_events import generate_events

pytestmark = pytest.mark.integration


def test_guide_state_is_continued_without_gap_or_duplicate(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    since = t0 - HOUR_MS  # when the guide's last run finished
    delivered_by_guide = generate_events(300, since - HOUR_MS, since - 1, seed=31)
    # Stamped before `since` but visible only after the guide's last request: its gap.
    missed_by_guide = generate_events(25, since - 4 * MIN_MS, since - 1, seed=32)
    after = generate_events(200, since, t0, seed=33)
    publish(harness, delivered_by_guide + after)
    publish(harness, missed_by_guide, delay_ms=lambda index: 5 * MIN_MS)
    # What the guide left: its objects (json.dumps default spacing, no final newline)...
    guide_lines = "\n".join(json.dumps(event) for event in delivered_by_guide)
    bucket.blob("harness/audit/2025/06/10/harness-audit-20250610-125959.jsonl").upload_from_string(
        guide_lines, content_type="application/x-ndjson"
    )
    # ...and its state file, here at the guide's default key under the prefix.
    bucket.blob("harness/audit/state.json").upload_from_string(
        json.dumps(
            {
                "since": since,
                "pageToken": None,
                "lastRun": since,
                "lastRunISO": "2025-06-10T13:00:00+00:00",
            }
        )
    )
    result = start_instance(STATE_KEY="harness/audit/state.json").invoke()
    assert result.status == 200, result.logs
    messages = [line["message"] for line in result.logs]
    assert "continuing from the guide's checkpoint" in messages
    assert any("lies under GCS_PREFIX" in message for message in messages)
    summary = result.summary
    assert summary["window_start"] == "2025-06-10T12:50:00.000Z"  # since - overlap
    assert summary["events_written"] == 225
    everything = delivered_by_guide + missed_by_guide + after
    # The state object sits under the prefix here (as the guide put it): skip it.
    state = state_of(bucket, "harness/audit/state.json")
    assert state["version"] == 2 and state["watermark_ms"] == t0
    bucket.blob("harness/audit/state.json").delete()
    assert_exactly_once(bucket, [event["auditId"] for event in everything])


def test_streaming_layout_end_to_end(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(150, t0 - HOUR_MS, t0, seed=34)
    publish(harness, events)
    instance = start_instance(OUTPUT_FORMAT="streaming", MAX_OBJECT_MB=0.05)
    assert instance.invoke().status == 200
    blob = next(iter(bucket.list_blobs(prefix="harness/audit/")))
    assert blob.metadata["output-format"] == "streaming"
    first = json.loads(blob.download_as_bytes().splitlines()[0])
    assert {"auditEventId", "auditModule", "auditAction", "auditEventTime"} <= set(first)
    assert "auditId" not in first
    # Switching layout mid-stream: dedup still keys on the REST auditId.
    clock.advance(3600)
    instance = start_instance(OUTPUT_FORMAT="api")
    assert instance.invoke().summary["events_written"] == 0
    assert_exactly_once(bucket, [event["auditId"] for event in events])
    assert state_of(bucket, STATE_KEY)["watermark_ms"] == t0 + HOUR_MS
