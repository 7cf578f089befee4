"""Cloud Run function entry point: one Pub/Sub-triggered run of the Harness audit collector.

Cloud Scheduler, a Force run, a continuation, a Pub/Sub redelivery and a local
functions-framework call all arrive here as the same CloudEvent; the message body is not
used (a continuation's ``reason`` attribute is logged as ``trigger_reason``). Clients are
built on the first invocation and reused by later ones on the same instance.

Each invocation logs one summary line. A run that succeeded, or found the lease held,
returns normally (after publishing its continuation, if it calls for one); a failure is
answered with HTTP 500, which Cloud Run records as a failed invocation.
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
from harness_audit.continuation import Continuation, next_run_text
from harness_audit.errors import NeedsFix, StorageRejected
from harness_audit.logs import configure_logging, log, register_secret
from harness_audit.run import Collector, RunResult, RunSummary, Stopped, collector_error

configure_logging()

# Replaced by tests that drive time themselves.
CLOCK = SystemClock()

_instance: tuple[Collector, Continuation] | None = None
_instance_lock = threading.Lock()


def _get_instance() -> tuple[Collector, Continuation]:
    global _instance
    with _instance_lock:
        if _instance is None:
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
            collector = Collector(config, bucket=client.bucket(config.bucket), clock=CLOCK)
            _instance = collector, Continuation(config.trigger_topic, CLOCK)
        return _instance


@functions_framework.cloud_event
def main(cloud_event) -> None:
    started = CLOCK.monotonic()
    invocation = {
        "pubsub_message_id": cloud_event["id"],
        "event_source": cloud_event["source"],
        **_trigger_reason(cloud_event),
    }
    try:
        collector, continuation = _get_instance()
    except Exception as exc:  # configuration or credentials: still one line
        result = RunResult(RunSummary(stopped=Stopped.FAILED), collector_error(exc))
    else:
        result = collector.run()
    summary, error = result.summary, result.error
    if summary.stopped is Stopped.SKIPPED:
        log(logging.INFO, str(error), outcome="skipped", **invocation)
    elif error is not None:
        action = (
            "fix the cause named above"
            if isinstance(error, NeedsFix)
            else "none needed if it passes: the next run resumes from the checkpoint"
        )
        error_name = type(error).__name__
        log(
            logging.ERROR,
            str(error),
            outcome="failed",
            error=error_name,
            action=action,
            **invocation,
            **summary.fields(),
        )
        # An HTTP error, not an exception: one log line, no traceback, still a failure.
        raise InternalServerError(error_name)
    else:
        # Last, once the checkpoint is written and the lease released; never raises.
        summary.continuation = continuation.after(summary, started)
        message = f"collected {summary.events_written} events; " + (
            "window complete"
            if summary.window_complete
            else f"stopped by the deadline, {next_run_text(summary.continuation)}"
        )
        log(logging.INFO, message, outcome="ok", **invocation, **summary.fields())


def _trigger_reason(cloud_event) -> dict:
    """``trigger_reason=continue`` for a run a continuation started; nothing otherwise."""
    data = cloud_event.data
    message = data.get("message") if isinstance(data, dict) else None
    attributes = message.get("attributes") if isinstance(message, dict) else None
    reason = attributes.get("reason") if isinstance(attributes, dict) else None
    return {"trigger_reason": str(reason)[:40]} if reason else {}
