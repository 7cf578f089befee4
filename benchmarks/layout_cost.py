"""Cost of ``OUTPUT_FORMAT=streaming`` over ``api``, in microseconds per event.

Run: ``.venv/bin/python -m benchmarks.layout_cost [--events N] [--rounds R]``.

Each event goes through what the collector does to it: ``json.loads`` of the event's JSON, the
layout (``api``: the event itself; ``streaming``: ``to_streaming``), then ``json.dumps`` with
``separators=(",", ":")`` and ``ensure_ascii=False``. The events (50,000 by default) are built
by varying the nine invented sample events of the project's shared notes (ids, times, users, IPs,
resource names). Timing is by batches of 1,000 events, the fastest of ``--rounds`` per batch.
Prints one JSON line: ``{"api_us_per_event", "streaming_us_per_event", "overhead_pct"}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

from harness_audit.layout import OutputFormat, layout_function

# The nine invented sample events (fictitious ids, emails and IPs; not real Harness output).
SAMPLE_EVENTS: list[dict] = [
    {
        "auditId": "6667f0a98c1e4b2d5f3a9e01",
        "resourceScope": {"accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q"},
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "203.0.113.24"},
        "timestamp": 1749564201512,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "maria.lopez@example.com"},
            "labels": {"username": "Maria Lopez", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
        },
        "module": "CORE",
        "resource": {
            "type": "USER",
            "identifier": "maria.lopez@example.com",
            "labels": {"resourceName": "Maria Lopez", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
        },
        "action": "LOGIN",
    },
    {
        "auditId": "6667f02f8c1e4b2d5f3a9df7",
        "resourceScope": {"accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q"},
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "198.51.100.77"},
        "timestamp": 1749564067088,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "j.chen@example.com"},
            "labels": {"username": "Jun Chen", "userId": "Qe8RtY2uIo4pAs6dFg0hJk"},
        },
        "module": "CORE",
        "resource": {
            "type": "USER",
            "identifier": "j.chen@example.com",
            "labels": {"resourceName": "Jun Chen", "userId": "Qe8RtY2uIo4pAs6dFg0hJk"},
        },
        "action": "UNSUCCESSFUL_LOGIN",
    },
    {
        "auditId": "6667ef948c1e4b2d5f3a9de2",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_api",
        },
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "10.20.4.18"},
        "timestamp": 1749563924930,
        "authenticationInfo": {
            "principal": {"type": "SERVICE_ACCOUNT", "identifier": "terraform_automation"}
        },
        "module": "CORE",
        "resource": {
            "type": "CONNECTOR",
            "identifier": "gcp_prod_connector",
            "labels": {"resourceName": "GCP Prod Connector"},
        },
        "action": "CREATE",
    },
    {
        "auditId": "6667ee0a8c1e4b2d5f3a9dbc",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_api",
        },
        "httpRequestInfo": {"requestMethod": "PUT"},
        "requestMetadata": {"clientIP": "203.0.113.24"},
        "timestamp": 1749563530271,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "maria.lopez@example.com"},
            "labels": {"username": "Maria Lopez", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
        },
        "module": "PMS",
        "resource": {
            "type": "PIPELINE",
            "identifier": "deploy_checkout",
            "labels": {"resourceName": "Deploy Checkout"},
        },
        "action": "UPDATE",
    },
    {
        "auditId": "6667ed0b8c1e4b2d5f3a9da1",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_api",
        },
        "timestamp": 1749563275004,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "maria.lopez@example.com"},
            "labels": {"username": "maria.lopez@example.com", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
        },
        "module": "PMS",
        "resource": {
            "type": "PIPELINE",
            "identifier": "deploy_checkout",
            "labels": {"resourceName": "Deploy Checkout"},
        },
        "action": "START",
        "auditEventData": {
            "type": "PipelineExecutionEventData",
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_api",
            "pipelineIdentifier": "deploy_checkout",
            "planExecutionId": "kP2nV7qXRWeT5yUiOa3sDf",
            "runSequence": 412,
            "status": "RUNNING",
            "triggeredBy": {
                "type": "MANUAL",
                "identifier": "b7QmZp3NTe2kXc9VwLr4sA",
                "extraInfo": {"email": "maria.lopez@example.com"},
            },
            "startTs": 1749563274811,
            "endTs": 0,
        },
    },
    {
        "auditId": "6667eb328c1e4b2d5f3a9d77",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
        },
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "198.51.100.9"},
        "timestamp": 1749562802617,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "admin.ops@example.com"},
            "labels": {"username": "Ops Admin", "userId": "Lm4NbV8cXz1QwErT6yUi9o"},
        },
        "module": "CORE",
        "resource": {
            "type": "USER",
            "identifier": "new.hire@example.com",
            "labels": {"resourceName": "new.hire@example.com", "userId": "Zx5CvB7nM2aSdF9gH1jK3l"},
        },
        "action": "ADD_COLLABORATOR",
        "auditEventData": {
            "type": "AddCollaboratorAuditEventData",
            "source": {"type": "Invitation"},
        },
    },
    {
        "auditId": "6667e9268c1e4b2d5f3a9d40",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_web",
        },
        "httpRequestInfo": {"requestMethod": "PATCH"},
        "requestMetadata": {"clientIP": "192.0.2.51"},
        "timestamp": 1749562278449,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "j.chen@example.com"},
            "labels": {"username": "Jun Chen", "userId": "Qe8RtY2uIo4pAs6dFg0hJk"},
        },
        "module": "CF",
        "environment": {"type": "Production", "identifier": "prod"},
        "resource": {
            "type": "FEATURE_FLAG",
            "identifier": "new_checkout_flow",
            "labels": {"resourceName": "New Checkout Flow"},
        },
        "action": "UPDATE",
        "auditEventData": {"type": "FeatureFlagAuditEventData", "environment": "prod"},
    },
    {
        "auditId": "6667e71c8c1e4b2d5f3a9d0b",
        "resourceScope": {"accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q"},
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "198.51.100.9"},
        "timestamp": 1749561756150,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "admin.ops@example.com"},
            "labels": {"username": "Ops Admin", "userId": "Lm4NbV8cXz1QwErT6yUi9o"},
        },
        "module": "CORE",
        "resource": {
            "type": "TOKEN",
            "identifier": "siem_collector_token",
            "labels": {"resourceName": "siem_collector_token"},
        },
        "action": "CREATE_TOKEN",
    },
    {
        "auditId": "6667e5648c1e4b2d5f3a9ce6",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "default",
            "projectIdentifier": "resilience",
        },
        "timestamp": 1749561300020,
        "authenticationInfo": {"principal": {"type": "SYSTEM", "identifier": "SYSTEM"}},
        "module": "CHAOS",
        "resource": {
            "type": "CHAOS_EXPERIMENT",
            "identifier": "pod-delete-checkout",
            "labels": {"resourceName": "pod-delete-checkout"},
        },
        "action": "DELETE",
        "auditEventData": {"type": "ChaosAuditEventData", "eventModule": "CHAOS"},
    },
]


def generate_events(count: int) -> list[str]:
    """``count`` events as JSON text, each a sample event with its values varied."""
    events = []
    for index in range(count):
        event = copy.deepcopy(SAMPLE_EVENTS[index % len(SAMPLE_EVENTS)])
        event["auditId"] = f"{0x6667E000 + index:08x}8c1e4b2d{index * 2654435761 % 16**8:08x}"
        event["timestamp"] -= index * 71
        metadata = event.get("requestMetadata")
        if metadata:
            head, _, _ = metadata["clientIP"].rpartition(".")
            metadata["clientIP"] = f"{head}.{index % 250 + 1}"
        authentication = event["authenticationInfo"]
        if authentication["principal"]["type"] == "USER":
            user = index % 37
            authentication["principal"]["identifier"] = f"user.{user}@example.com"
            authentication["labels"] = {"username": f"User {user}", "userId": f"uid{user:019d}"}
        resource = event["resource"]
        resource["identifier"] = f"{resource['identifier']}_{index % 101}"
        resource["labels"]["resourceName"] = f"{resource['labels']['resourceName']} {index % 101}"
        data = event.get("auditEventData")
        if data and "runSequence" in data:
            data["runSequence"] = index
        events.append(json.dumps(event, separators=(",", ":")))
    return events


def batch_seconds(lines: list[str], layout: Callable[[dict], dict]) -> float:
    """Wall time of decode, lay out, encode over all ``lines``."""
    loads = json.loads
    dumps = json.dumps
    start = time.perf_counter()
    for line in lines:
        dumps(layout(loads(line)), separators=(",", ":"), ensure_ascii=False)
    return time.perf_counter() - start


def measure(lines: list[str], rounds: int, batch: int = 1_000) -> tuple[float, float]:
    """Seconds per event for ``api`` and ``streaming``.

    The events are timed in batches, the two layouts one after the other on each batch (in
    turns, first one then the other), and each batch's fastest round counts: a pause of the
    machine spoils one batch of one round, not the result.
    """
    layouts = (layout_function(OutputFormat.API), layout_function(OutputFormat.STREAMING))
    batches = [lines[start : start + batch] for start in range(0, len(lines), batch)]
    best = [[float("inf")] * len(batches) for _ in layouts]
    batch_seconds(lines[:batch], layouts[1])  # warm up
    for round_ in range(rounds):
        order = (0, 1) if round_ % 2 == 0 else (1, 0)
        for index, events in enumerate(batches):
            for which in order:
                seconds = batch_seconds(events, layouts[which])
                best[which][index] = min(best[which][index], seconds)
    api, streaming = (sum(times) / len(lines) for times in best)
    return api, streaming


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    api, streaming = measure(generate_events(args.events), args.rounds)
    result = {
        "api_us_per_event": round(api * 1e6, 3),
        "streaming_us_per_event": round(streaming * 1e6, 3),
        "overhead_pct": round((streaming / api - 1) * 100, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
