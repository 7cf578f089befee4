"""Cloud Run function entry point: one Pub/Sub-triggered run of the Harness audit collector.

Scheduler, Force run, continuation and redelivery all arrive as the same CloudEvent, whose
body is not used. Clients are built on the first invocation and reused by later ones. Each
invocation logs one summary line; a failure is answered with HTTP 500 (no traceback).
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
CLOCK = SystemClock()  # replaced by tests that drive time themselves
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
                bucket = storage.Client().bucket(config.bucket)
            except DefaultCredentialsError:
                raise StorageRejected(
                    "no Google credentials found: on Cloud Run the function's service account "
                    "provides them; locally run 'gcloud auth application-default login', or "
                    "set STORAGE_EMULATOR_HOST to use a local fake-gcs-server"
                ) from None
            collector = Collector(config, bucket=bucket, clock=CLOCK)
            _instance = collector, Continuation(config.trigger_topic, CLOCK)
        return _instance


@functions_framework.cloud_event
def main(cloud_event) -> None:
    started = CLOCK.monotonic()
    invocation = {"pubsub_message_id": cloud_event["id"], "event_source": cloud_event["source"]}
    invocation |= _trigger_reason(cloud_event)
    try:
        collector, continuation = _get_instance()
        result = collector.run()
    except Exception as exc:  # the configuration or the credentials: still one line
        result = RunResult(RunSummary(stopped=Stopped.FAILED), collector_error(exc))
    summary, error = result.summary, result.error
    if summary.stopped is Stopped.SKIPPED:
        log(logging.INFO, str(error), outcome="skipped", **invocation)
    elif error is not None:
        retried = "none needed if it passes: the next run resumes from the checkpoint"
        action = "fix the cause named above" if isinstance(error, NeedsFix) else retried
        name = type(error).__name__
        fields = {"error": name, "action": action, **invocation, **summary.fields()}
        log(logging.ERROR, str(error), outcome="failed", **fields)
        raise InternalServerError(name)  # one log line, no traceback, still a failure
    else:
        summary.continuation = continuation.after(summary, started)  # last; never raises
        stopped = f"stopped by the deadline, {next_run_text(summary.continuation)}"
        stopped = "window complete" if summary.window_complete else stopped
        message = f"collected {summary.events_written} events; {stopped}"
        log(logging.INFO, message, outcome="ok", **invocation, **summary.fields())


def _trigger_reason(cloud_event) -> dict:
    """``trigger_reason=continue`` for a run a continuation started; nothing otherwise."""
    data = cloud_event.data
    message = data.get("message") if isinstance(data, dict) else None
    attributes = message.get("attributes") if isinstance(message, dict) else None
    reason = attributes.get("reason") if isinstance(attributes, dict) else None
    return {"trigger_reason": str(reason)[:40]} if reason else {}
