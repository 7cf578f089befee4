"""Cloud Run function entry point: one Pub/Sub-triggered run of the Harness audit collector.

Cloud Scheduler, a Force run, a Pub/Sub redelivery and a local functions-framework call
all arrive here as the same CloudEvent; the message body is not used. Clients are built
on the first invocation and reused by later ones on the same instance.

Outcomes: success (window done, or continued next run, or another run holds the lease)
returns normally; anything else is logged once and answered with HTTP 500, which Cloud
Run records as a failed invocation.
"""

import ctypes
import gc
import os
import sys
import threading

import functions_framework
from google.cloud import storage
from werkzeug.exceptions import InternalServerError

from harness_audit.clock import SystemClock
from harness_audit.config import load_config
from harness_audit.errors import CollectorError, LeaseHeld, NeedsFix
from harness_audit.logs import configure_logging, log, register_secret
from harness_audit.run import Collector

INFO, WARNING, ERROR = 20, 30, 40

configure_logging()

# Everything imported so far lives as long as the instance: keep it out of the collector's
# way. A run allocates millions of short-lived objects (decoded events); collecting the
# young generation every 50,000 allocations instead of 700 saves a sixth of its CPU.
gc.freeze()
gc.set_threshold(50_000, 20, 20)
# The page fetcher and the run's thread share the GIL: a response that arrives while a page
# is being decoded waits for the next switch. 0.5 ms instead of 5 ms keeps it from stalling.
sys.setswitchinterval(0.0005)


def _return_large_buffers_to_the_os() -> None:
    """Keep memory flat whatever the volume.

    Parts are buffers of up to 8 MB. Once glibc frees one that it had mmap'ed, it raises its
    mmap threshold, so the next ones come from the heap, which does not shrink: each part
    then adds to the resident size. A fixed threshold keeps them mmap'ed and returned on
    free (measured with make bench: +38 MB at 200,000 events without it, +23 MB with it).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


_return_large_buffers_to_the_os()

# Replaced by tests that drive time themselves.
CLOCK = SystemClock()

_collector: Collector | None = None
_collector_lock = threading.Lock()


def _get_collector() -> Collector:
    global _collector
    with _collector_lock:
        if _collector is None:
            config = load_config(os.environ)
            register_secret(config.api_key)
            for warning in config.warnings:
                log(WARNING, warning)
            bucket = storage.Client().bucket(config.bucket)
            _collector = Collector(config, bucket=bucket, clock=CLOCK)
        return _collector


@functions_framework.cloud_event
def main(cloud_event) -> None:
    invocation = {"event_id": cloud_event["id"], "event_source": cloud_event["source"]}
    try:
        summary = _get_collector().run()
    except LeaseHeld as held:
        log(INFO, str(held), outcome="skipped", **invocation)
        return
    except CollectorError as failure:
        summary = getattr(failure, "summary", None)
        log(
            ERROR,
            str(failure),
            outcome="failed",
            error=type(failure).__name__,
            action="fix the cause named above"
            if isinstance(failure, NeedsFix)
            else "none needed if it passes: the next run resumes from the checkpoint",
            **invocation,
            **(summary.fields() if summary else {}),
        )
        # An HTTP error, not an exception: one log line, no traceback, still a failure.
        raise InternalServerError(type(failure).__name__) from None
    fields = summary.fields()
    if summary.window_complete:
        message = f"collected {summary.events_written} events; window complete"
    else:
        message = (
            f"collected {summary.events_written} events; stopped by "
            f"{summary.stopped_by or 'the deadline'}, the window continues next run"
        )
    log(INFO, message, outcome="ok", **invocation, **fields)
