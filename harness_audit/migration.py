"""Taking over from the guide's function: what its objects already hold.

The guide keeps ``{"since": ms, "pageToken": ...}`` (read by ``state``, with the other
checkpoint formats) and writes objects under the same date folders. A first run from that
checkpoint starts OVERLAP_SECONDS before ``since`` and, through ``adopt_guide_state``,
learns the ids the guide's objects already hold there, so the overlap is not written twice.
"""

import logging
from dataclasses import replace

from harness_audit.clock import Deadline, iso, utc
from harness_audit.errors import StorageUnavailable
from harness_audit.gcs import storage_errors
from harness_audit.logs import log
from harness_audit.sink import ObjectSink, ids_in
from harness_audit.state import State


def adopt_guide_state(
    state: State, sink: ObjectSink, *, overlap_ms: int, now_ms: int, deadline: Deadline
) -> State:
    """The guide's state with the ids its objects hold since ``since`` minus the overlap."""
    since_ms = state.watermark_ms - overlap_ms
    delivered = ids_written_since(sink, since_ms, now_ms, deadline)
    log(
        logging.INFO,
        "continuing from the guide's checkpoint",
        since=iso(state.watermark_ms),
        window_start=iso(since_ms),
        ids_found_in_earlier_objects=len(delivered),
    )
    return replace(state, delivered=delivered)


def ids_written_since(
    sink: ObjectSink, since_ms: int, until_ms: int, deadline: Deadline
) -> dict[str, int]:
    """Ids stamped at or after ``since_ms`` in objects under the prefix that were created
    since then, in the date folders both we and the guide's function use."""
    bucket, prefix = sink.bucket, sink.prefix
    ids: dict[str, int] = {}
    day = utc(since_ms).date()
    last_day = utc(until_ms).date()
    with storage_errors("list earlier objects", bucket.name):
        while day <= last_day:
            if deadline.expired():
                raise StorageUnavailable(
                    f"reading the objects written since {iso(since_ms)} did not finish "
                    "before MAX_RUN_SECONDS; the next run tries again"
                )
            folder = f"{prefix}/{day:%Y/%m/%d}/" if prefix else f"{day:%Y/%m/%d}/"
            for blob in bucket.list_blobs(prefix=folder):
                created = blob.time_created
                if created is not None and created.timestamp() * 1000 < since_ms:
                    continue
                for audit_id, timestamp in ids_in(blob.download_as_bytes()).items():
                    if timestamp >= since_ms:
                        ids[audit_id] = timestamp
            day = day.fromordinal(day.toordinal() + 1)
    return ids
