"""Cloud Run function entry point: one Pub/Sub-triggered run of the Harness audit collector.

Cloud Scheduler, a Force run, a continuation, a Pub/Sub redelivery and a local
functions-framework call all arrive here as the same CloudEvent; the message body is not
used (a continuation's ``reason`` attribute is logged as ``trigger_reason``). Clients are
built on the first invocation and reused by later ones on the same instance.

Outcomes: success (window done, or continued by the next run, or another run holds the
lease) returns normally; a run stopped at its deadline then publishes its continuation
(harness_audit/continuation.py), and a failure to publish is only a warning. Anything else
is logged once, in one line, and answered with HTTP 500, which Cloud Run records as a
failed invocation.
"""

import logging
import os
import threading

import functions_framework
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import storage
from werkzeug.exceptions import InternalServerError

from harness_audit.clock import SystemClock
from harness_audit.config import load_config
from harness_audit.continuation import next_run_text
from harness_audit.errors import CollectorError, LeaseHeld, NeedsFix, StorageRejected
from harness_audit.logs import configure_logging, log, register_secret
from harness_audit.run import Collector

configure_logging()

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
                log(logging.WARNING, warning)
            try:
                client = storage.Client()
            except DefaultCredentialsError:
                raise StorageRejected(
                    "no Google credentials found: on Cloud Run the function's service account "
                    "provides them; locally run 'gcloud auth application-default login', or "
                    "set STORAGE_EMULATOR_HOST to use a local fake-gcs-server"
                ) from None
            _collector = Collector(config, bucket=client.bucket(config.bucket), clock=CLOCK)
        return _collector


@functions_framework.cloud_event
def main(cloud_event) -> None:
    started = CLOCK.monotonic()
    invocation = {
        "pubsub_message_id": cloud_event["id"],
        "event_source": cloud_event["source"],
        **_trigger_reason(cloud_event),
    }
    try:
        collector = _get_collector()
        summary = collector.run()
    except LeaseHeld as held:
        log(logging.INFO, str(held), outcome="skipped", **invocation)
        return
    except CollectorError as failure:
        summary = getattr(failure, "summary", None)
        log(
            logging.ERROR,
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
    except Exception as unexpected:  # a defect: still one line, never a traceback
        log(
            logging.ERROR,
            f"unexpected {type(unexpected).__name__}: {str(unexpected)[:500]}",
            outcome="failed",
            error="InternalError",
            action="please report this; the next run resumes from the checkpoint",
            **invocation,
        )
        raise InternalServerError("InternalError") from None
    # Last, once the checkpoint is written and the lease released; never raises.
    summary.continuation = collector.continuation.after(summary, started)
    if summary.window_complete:
        message = f"collected {summary.events_written} events; window complete"
    else:
        message = (
            f"collected {summary.events_written} events; stopped by "
            f"{summary.stopped_by or 'the deadline'}, {next_run_text(summary.continuation)}"
        )
    log(logging.INFO, message, outcome="ok", **invocation, **summary.fields())


def _trigger_reason(cloud_event) -> dict:
    """``trigger_reason=continue`` for a run a continuation started; nothing otherwise."""
    data = cloud_event.data
    message = data.get("message") if isinstance(data, dict) else None
    attributes = message.get("attributes") if isinstance(message, dict) else None
    reason = attributes.get("reason") if isinstance(attributes, dict) else None
    return {"trigger_reason": str(reason)[:40]} if reason else {}
