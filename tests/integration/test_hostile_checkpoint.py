"""Checkpoints edited by hand or by anyone with write access to the bucket: never a lock-out,
never a silent skip, never a traceback. Each corrupt one fails loudly and is left untouched."""

import json

import pytest
from support import HOUR_MS, MIN_MS, STATE_KEY, assert_exactly_once, publish

from devtools.sample_events import generate_events

pytestmark = pytest.mark.integration

YEAR_MS = 365 * 24 * HOUR_MS


def window_state(start_ms: int, end_ms: int, **position) -> dict:
    window = {"start_ms": start_ms, "end_ms": end_ms, "lower_ms": start_ms, "upper_ms": end_ms}
    window |= {"order": None, "burst_pass": 1, "next_part": 1, "pages": 0, "events_written": 0}
    return {"version": 2, "watermark_ms": None, "window": window | position}


def put_state(bucket, document) -> bytes:
    data = json.dumps(document).encode() if not isinstance(document, bytes) else document
    bucket.blob(STATE_KEY).upload_from_string(data)
    return data


def test_a_lease_ten_years_ahead_is_taken_over(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    events = generate_events(100, t0 - 30 * MIN_MS, t0, seed=61)
    publish(harness, events)
    put_state(
        bucket,
        {
            "version": 2,
            "watermark_ms": t0 - HOUR_MS,
            "delivered": {},
            "window": None,
            "lease": {"owner": "stuck", "expires_ms": t0 + 10 * YEAR_MS},
        },
    )
    result = start_instance().invoke()
    assert result.status == 200 and result.summary["outcome"] == "ok", result.logs
    takeover = [line for line in result.logs if "taking it over" in line["message"]]
    assert takeover and takeover[0]["severity"] == "WARNING"
    assert_exactly_once(bucket, [event["auditId"] for event in events])


def test_a_live_lease_of_normal_length_is_still_honoured(start_instance, harness, clock, bucket):
    t0 = clock.now_ms()
    publish(harness, generate_events(10, t0 - MIN_MS, t0, seed=62))
    data = put_state(
        bucket,
        {"version": 2, "watermark_ms": t0 - HOUR_MS, "lease": {"owner": "x", "expires_ms": t0 + 1}},
    )
    result = start_instance().invoke()
    assert result.status == 200 and result.summary["outcome"] == "skipped"
    assert len(result.logs) == 1  # "run started" too would be a second line
    assert bucket.blob(STATE_KEY).download_as_bytes() == data
    assert harness.requests == []


@pytest.mark.parametrize(
    ("document", "says"),
    [
        # A watermark two hours ahead would skip every event until then.
        (lambda t0: {"version": 2, "watermark_ms": t0 + 2 * HOUR_MS}, "lies after now"),
        (lambda t0: window_state(t0 - HOUR_MS, t0 + 30 * 24 * HOUR_MS), "after now"),
        # 1970: resuming from it would deliver the account's whole history again.
        (lambda t0: {"version": 2, "watermark_ms": 1}, "older than the longest lookback"),
        (lambda t0: window_state(1, t0), "older than the longest lookback"),
        # A burst 400 days before its window would write old events into today's window.
        (lambda t0: window_state(t0 - HOUR_MS, t0, burst_ms=t0 - 400 * 24 * HOUR_MS), "burst_ms"),
        # Microseconds, an easy slip when following the reset recipe.
        (lambda t0: {"version": 2, "watermark_ms": t0 * 1000}, "1970 to 9999"),
        (lambda t0: {"version": 2, "watermark_ms": -1}, "1970 to 9999"),
        (lambda t0: {"since": 10**16}, "not epoch milliseconds"),
        # The guide's `since` of 1970: 20,000 day folders to scan before any request.
        (lambda t0: {"since": 1}, "older than the longest lookback"),
        (lambda t0: {"version": True, "watermark_ms": t0}, "version is True"),
        (lambda t0: b'{"version": 2, "delivered": ' + b"[" * 5000 + b"]" * 5000 + b"}", "JSON"),
    ],
    ids=[
        "watermark-ahead",
        "window-ends-ahead",
        "watermark-1970",
        "window-starts-1970",
        "burst-outside-window",
        "microseconds",
        "negative",
        "guide-since-huge",
        "guide-since-1970",
        "version-true",
        "deeply-nested",
    ],
)
def test_an_impossible_checkpoint_fails_loudly_and_is_left_untouched(
    start_instance, harness, clock, bucket, document, says
):
    t0 = clock.now_ms()
    publish(harness, generate_events(20, t0 - HOUR_MS, t0, seed=63))
    data = put_state(bucket, document(t0))
    result = start_instance().invoke()
    assert result.status == 500
    summary = result.summary
    assert summary["severity"] == "ERROR" and summary["error"] == "StateCorrupt"
    assert says in summary["message"] and "gcloud storage cat" in summary["message"]
    assert "Traceback" not in result.stderr
    assert bucket.blob(STATE_KEY).download_as_bytes() == data
    assert harness.requests == []
    assert list(bucket.list_blobs(prefix="harness/audit/")) == []
