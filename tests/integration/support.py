"""Helpers for the integration tests: publishing events, reading back what was written."""

import json
from collections import defaultdict

ACCOUNT = "simAccount0000000000001"
API_KEY = "sat.simAccount0000000000001.simtoken.simsecretVALUE42"
HOUR_MS = 3_600_000
MIN_MS = 60_000
STATE_KEY = "harness/state/audit-state.json"


def publish(harness, events, delay_ms=lambda index: 0) -> None:
    """Make each event visible ``delay_ms(index)`` after its timestamp."""
    by_visible = defaultdict(list)
    for index, event in enumerate(events):
        by_visible[event["timestamp"] + delay_ms(index)].append(event)
    for visible_at, group in by_visible.items():
        harness.add_events(group, visible_at_ms=visible_at)


def written_events(bucket, prefix: str = "harness/audit") -> list[dict]:
    """Every event line in every data object under the prefix."""
    events = []
    for blob in bucket.list_blobs(prefix=prefix + "/"):
        for line in blob.download_as_bytes().splitlines():
            events.append(json.loads(line))
    return events


def assert_exactly_once(bucket, expected_ids, prefix: str = "harness/audit") -> None:
    ids = [
        event.get("auditId", event.get("auditEventId")) for event in written_events(bucket, prefix)
    ]
    duplicates = {audit_id for audit_id in ids if ids.count(audit_id) > 1}
    assert not duplicates, f"written more than once: {sorted(duplicates)[:5]}"
    missing = set(expected_ids) - set(ids)
    assert not missing, f"{len(missing)} never written, e.g. {sorted(missing)[:5]}"
    unexpected = set(ids) - set(expected_ids)
    assert not unexpected, f"written but not expected: {sorted(unexpected)[:5]}"


def state_of(bucket, key: str = STATE_KEY) -> dict | None:
    blob = bucket.get_blob(key)
    return None if blob is None else json.loads(blob.download_as_bytes())


def content_of(bucket, key: str = STATE_KEY) -> dict | None:
    """What the checkpoint says about delivery, without its lease and bookkeeping: equal
    before and after a run that must change nothing."""
    state = state_of(bucket, key)
    if state is None:
        return None
    return {name: state.get(name) for name in ("version", "watermark_ms", "delivered", "window")}
