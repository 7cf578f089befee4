"""Cloud Run function entry point: one Pub/Sub-triggered run of the Harness audit collector.

Cloud Scheduler, a Force run, a Pub/Sub redelivery and a local functions-framework call
all arrive here as the same CloudEvent; the message body is not used. Clients are built
on the first invocation and reused by later ones on the same instance.

Outcomes: success (window done, or continued next run, or another run holds the lease)
returns normally; anything else is logged once and answered with HTTP 500, which Cloud
Run records as a failed invocation.
"""

import os
import threading

import functions_framework
from google.cloud import storage
from werkzeug.exceptions import InternalServerError

from harness_audit.clock import SystemClock
from harness_audit.config import load_config
from harness_audit.errors import CollectorError, LeaseHeld, NeedsFix
from harness_audit.logs import configure_logging, log, register_secret
from harness_audit.run import Collector
from harness_audit.tuning import tune_process

INFO, WARNING, ERROR = 20, 30, 40

configure_logging()

tune_process()

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
