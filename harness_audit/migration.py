"""Taking over from the guide's function: a first run from its checkpoint learns the ids its
objects already hold within the overlap, so the overlap is not written twice."""

import logging
from dataclasses import replace

from harness_audit.clock import Deadline, iso, utc
from harness_audit.errors import StorageUnavailable
from harness_audit.gcs import call_options, storage_errors
from harness_audit.logs import log
from harness_audit.sink import ObjectSink, folder
from harness_audit.state import State


def adopt_guide_state(
    state: State, sink: ObjectSink, *, overlap_ms: int, now_ms: int, deadline: Deadline
) -> State:
    """The guide's state with the ids stamped since ``since`` minus the overlap in objects
    created since then, in the date folders (ours and the guide's) from that day to today."""
    since_ms = state.watermark_ms - overlap_ms
    base, first, end = folder(sink.prefix), utc(since_ms), utc(now_ms + 86_400_000)
    days = {"start_offset": f"{base}{first:%Y/%m/%d}/", "end_offset": f"{base}{end:%Y/%m/%d}/"}
    with storage_errors("list earlier objects", sink.bucket.name):
        blobs = list(sink.bucket.list_blobs(**days, **call_options(deadline.storage_seconds())))
    delivered: dict[str, int] = {}
    for blob in blobs:
        if deadline.expired():
            raise StorageUnavailable(
                f"reading the objects written since {iso(since_ms)} did not finish "
                "before MAX_RUN_SECONDS; the next run tries again"
            )
        if blob.time_created.timestamp() * 1000 >= since_ms:
            ids = sink.read_ids(blob.name, seconds=deadline.storage_seconds())
            delivered.update((i, ts) for i, ts in ids.items() if ts >= since_ms)
    message = "continuing from the guide's checkpoint"
    found = {"since": iso(state.watermark_ms), "window_start": iso(since_ms)}
    log(logging.INFO, message, **found, ids_found_in_earlier_objects=len(delivered))
    return replace(state, delivered=delivered)
