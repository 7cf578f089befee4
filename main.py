"""Cloud Run entry point: each Pub/Sub message (Scheduler, Force run, continuation, redelivery;
body unused) is a collector run, or a verify with ``command=verify``. Clients are built once per
instance; each invocation logs one summary line, a failure is HTTP 500 (no traceback)."""

import functools
import logging
import os
import threading

import functions_framework
from werkzeug.exceptions import InternalServerError

from harness_audit.clock import SystemClock
from harness_audit.config import load_config
from harness_audit.continuation import NEXT_RUN, Continuation
from harness_audit.errors import LeaseHeld, NeedsFix
from harness_audit.gcs import open_bucket
from harness_audit.harness_client import Pacer
from harness_audit.logs import configure_logging, log, register_secret
from harness_audit.run import Collector, RunResult, RunSummary, Stopped, collector_error
from harness_audit.verify import summary_line, verify_scheduled

configure_logging()
CLOCK = SystemClock()  # replaced by tests that drive time themselves
_instance: tuple[Collector, Continuation, functools.partial] | None = None
_instance_lock = threading.Lock()


def _get_instance() -> tuple[Collector, Continuation, functools.partial]:
    global _instance
    with _instance_lock:
        if _instance is None:
            config = load_config(os.environ)
            register_secret(config.api_key)
            for warning in config.warnings:
                log(logging.WARNING, warning)
            bucket = open_bucket(config.bucket)
            # One pacer: the collector and verify share the Harness key's rate.
            pacer = Pacer(config.max_requests_per_minute, CLOCK)
            collector = Collector(config, bucket=bucket, clock=CLOCK, pacer=pacer)
            verify = functools.partial(verify_scheduled, config, bucket, CLOCK, pacer)
            _instance = collector, Continuation(config.trigger_topic, CLOCK), verify
        return _instance


@functions_framework.cloud_event
def main(cloud_event) -> None:
    started = CLOCK.monotonic()
    invocation = {"pubsub_message_id": cloud_event["id"], "event_source": cloud_event["source"]}
    data = cloud_event.data  # the Pub/Sub message's attributes: reason=continue, command=verify
    pubsub = data.get("message") if isinstance(data, dict) else None
    attributes = pubsub.get("attributes") if isinstance(pubsub, dict) else None
    attributes = attributes if isinstance(attributes, dict) else {}
    if reason := attributes.get("reason"):
        invocation["trigger_reason"] = str(reason)[:40]
    command = str(attributes["command"]) if "command" in attributes else None
    severity, message, fields = _run(started) if command is None else _command(command)
    log(severity, message, **invocation, **fields)
    if severity >= logging.ERROR:  # one log line, no traceback, still a failure
        raise InternalServerError(fields.get("error", "verify found events missing"))


def _run(started: float) -> tuple[int, str, dict]:
    """The collector's run, then its continuation: the summary line's severity, message, fields."""
    try:
        collector, continuation, _ = _get_instance()
        result = collector.run()
    except Exception as exc:  # the configuration or the credentials: still one line
        result = RunResult(RunSummary(stopped=Stopped.FAILED), collector_error(exc))
    summary, error = result.summary, result.error
    if summary.stopped is Stopped.SKIPPED:
        return logging.INFO, str(error), {"outcome": "skipped"}
    if error is not None:
        retried = "none needed if it passes: the next run resumes from the checkpoint"
        action = "fix the cause named above" if isinstance(error, NeedsFix) else retried
        fields = {"outcome": "failed", "error": type(error).__name__, "action": action}
        return logging.ERROR, str(error), fields | summary.fields()
    summary.continuation = continuation.after(summary, started)  # last; never raises
    stopped = f"stopped by the deadline, {NEXT_RUN[summary.continuation]}"
    stopped = "window complete" if summary.window_complete else stopped
    message = f"collected {summary.events_written} events; {stopped}"
    return logging.INFO, message, {"outcome": "ok"} | summary.fields()


def _command(command: str) -> tuple[int, str, dict]:
    """``command=verify``; any other fails loudly, named (the verify job is the only sender)."""
    try:
        if command != "verify":
            raise NeedsFix(f"unknown command {command[:40]!r}: only command=verify is known")
        severity, message, fields = summary_line(_get_instance()[2]())
    except LeaseHeld as held:
        severity, message, fields = logging.INFO, str(held), {"outcome": "skipped"}
    except Exception as exc:  # the command, configuration, credentials, Harness, the bucket
        error = collector_error(exc)
        severity, message = logging.ERROR, f"verify failed: {error}"
        fields = {"outcome": "verify_failed", "error": type(error).__name__}
    return severity, message, {"command": command[:40]} | fields
