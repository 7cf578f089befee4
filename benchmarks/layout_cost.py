"""Cost of ``OUTPUT_FORMAT=streaming`` over ``api``, in microseconds per event.

Run: ``.venv/bin/python -m benchmarks.layout_cost [--events N] [--rounds R]``.

Each event goes through what the collector does to it: ``json.loads`` of the event's JSON, the
layout (``api``: the event itself; ``streaming``: ``to_streaming``), then ``json.dumps`` with
``separators=(",", ":")`` and ``ensure_ascii=False``. The events (50,000 by default) are built
by varying the nine invented sample events of the project's shared notes (ids, times, users, IPs,
resource names). Timing is by batches of 1,000 events, the fastest of ``--rounds`` per batch.
Prints one JSON line: ``{"api_us_per_event", "streaming_us_per_event", "overhead_pct"}``.

This isolates the mapping's CPU cost against a re-encoding baseline. The collector itself
writes ``api`` events as Harness's own text, without re-encoding them, so end to end the
streaming layout also pays the encode: ``make bench`` measures that.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

from devtools import sample_events
from harness_audit.layout import OutputFormat, layout_function

# The nine invented sample events (fictitious ids, emails and IPs; not real Harness output).
SAMPLE_EVENTS = sample_events.SAMPLE_EVENTS


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
