"""``make run``: one real run of the function, through functions-framework, locally.

With no Harness credentials in the environment it starts the embedded stand-ins:
fake-gcs-server (in memory), the project's Harness simulator, seeded with realistic
events and a 429 plus a truncated response to retry through, and a fake Pub/Sub publish
endpoint (PUBSUB_EMULATOR_HOST). It then invokes the function with a Pub/Sub CloudEvent
shaped as Cloud Scheduler delivers it. The backlog is more than one short run
(MAX_RUN_SECONDS=10) can read, so the run stops at its deadline and publishes a
continuation to TRIGGER_TOPIC; each published message is delivered to the function as
the next invocation, until the window is complete. It prints the function's log lines
and what was written, and invokes it once more to show that a second run writes nothing
twice.

With HARNESS_ACCOUNT_ID, HARNESS_API_KEY and GCS_BUCKET set (and Google credentials, e.g.
``gcloud auth application-default login``) it runs once against the real services.
"""

import json
import os
import subprocess
import sys
import time

from devtools.fake_gcs import FakeGcs
from devtools.fake_pubsub import FakePubSub
from devtools.function_process import FunctionProcess
from devtools.harness_simulator import DEFAULT_ACCOUNT_ID, DEFAULT_API_KEY, HarnessSimulator
from devtools.sample_events import generate_events

REAL = ("HARNESS_ACCOUNT_ID", "HARNESS_API_KEY", "GCS_BUCKET")
LOCAL_BUCKET = "harness-audit-local"
LOCAL_TOPIC = "projects/local-project/topics/harness-audit-trigger"
# Continuations, at most, before make run gives up on a window (a loop would be a defect).
MAX_CONTINUATIONS = 10


def main() -> int:
    given = [name for name in REAL if os.environ.get(name)]
    if given and len(given) < len(REAL):
        missing = ", ".join(name for name in REAL if name not in given)
        print(
            f"make run: {', '.join(given)} set but {missing} not: set all three to run "
            "against Harness and GCS, or none to use the local stand-ins",
            file=sys.stderr,
        )
        return 2
    return run_real() if given else run_local()


def show(output: str) -> dict | None:
    """Print the function's log lines; return its final summary line."""
    summary = None
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            print(f"  | {line}")
            continue
        print("  " + json.dumps(entry, ensure_ascii=False))
        if "outcome" in entry:
            summary = entry
    return summary


def run_real() -> int:
    print("make run: HARNESS_* and GCS_BUCKET are set: one run against the real services.")
    with FunctionProcess({}) as function:
        status = function.invoke()
        summary = show(function.read_output())
    print(f"\nHTTP {status}; outcome: {summary and summary['outcome']}")
    return 0 if status == 200 else 1


def run_local() -> int:
    print(
        "make run: no Harness credentials in the environment, so using the local "
        "stand-ins (fake-gcs-server, the Harness simulator, a fake Pub/Sub endpoint).\n"
    )
    now_ms = time.time_ns() // 1_000_000
    events = generate_events(4_000, now_ms - 110 * 60_000, now_ms - 1_000, seed=7)
    with FakeGcs() as gcs, HarnessSimulator() as harness, FakePubSub() as pubsub:
        gcs.create_bucket(LOCAL_BUCKET)
        harness.add_events(events)
        harness.inject("429", "truncated_200")
        env = {
            "HARNESS_ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
            "HARNESS_API_KEY": DEFAULT_API_KEY,
            "HARNESS_API_BASE": harness.url,
            "GCS_BUCKET": LOCAL_BUCKET,
            "STORAGE_EMULATOR_HOST": gcs.url,
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "TRIGGER_TOPIC": LOCAL_TOPIC,
            "START_MINUTES_BACK": "120",
            # 5 s of paging a run, at 360 requests a minute: about 30 of the 40 pages.
            "MAX_RUN_SECONDS": os.environ.get("MAX_RUN_SECONDS", "10"),
            "MAX_OBJECT_MB": os.environ.get("MAX_OBJECT_MB", "1"),
            "OUTPUT_FORMAT": os.environ.get("OUTPUT_FORMAT", "api"),
        }
        print(
            f"Harness simulator at {harness.url} holding {len(events)} events from the last "
            f"110 minutes; fake-gcs-server at {gcs.url}, bucket {LOCAL_BUCKET}; fake Pub/Sub "
            f"at {pubsub.host}, topic {LOCAL_TOPIC}.\n"
            "Settings this demo overrides (see the README's configuration table for the "
            "defaults):\n"
            f"  START_MINUTES_BACK={env['START_MINUTES_BACK']}: the simulator's events span "
            "the last 110 minutes\n"
            f"  MAX_RUN_SECONDS={env['MAX_RUN_SECONDS']}: short, so run 1 stops at its "
            "deadline and its continuation finishes the window\n"
            f"  MAX_OBJECT_MB={env['MAX_OBJECT_MB']}: small, so the window is written in "
            "several parts"
        )
        with FunctionProcess(env) as function:
            print("\nRun 1 (a Cloud Scheduler Pub/Sub message through functions-framework):")
            first = [(function.invoke(), show(function.read_output()))]
            for number in range(1, MAX_CONTINUATIONS + 1):
                messages = pubsub.take()
                if not messages:
                    break
                for message in messages:
                    print(
                        f"\nRun 1, continuation {number} (delivered from the published "
                        f"message {message.message_id}, attributes {message.attributes}):"
                    )
                    status = function.invoke(event=message.event())
                    first.append((status, show(function.read_output())))
            print("\nRun 2, straight after (re-reads the overlap, writes nothing twice):")
            status_2 = function.invoke()
            second = show(function.read_output())
        print_objects(gcs.url)
        print("\npython -m harness_audit status:")
        subprocess.run(
            [sys.executable, "-m", "harness_audit", "status"],
            env={**os.environ, **env},
            check=False,
            timeout=60,
        )
    ok = all(status == 200 and summary for status, summary in first)
    ok = ok and first[-1][1]["window_complete"] and status_2 == 200 and second
    if ok:
        summaries = [summary for _, summary in first]
        written = sum(summary["events_written"] for summary in summaries)
        objects = sum(len(summary["objects"]) for summary in summaries)
        retried = sum(sum(summary["retries"].values()) for summary in summaries)
        print(
            f"\nRun 1 wrote {written} events in {objects} object(s) after {retried} retried "
            f"request(s), in {len(summaries)} invocation(s): the scheduled one and "
            f"{len(summaries) - 1} continuation(s) (continuation: "
            f"{', '.join(summary['continuation'] for summary in summaries)}). Run 2 wrote "
            f"{second['events_written']} and dropped {second['duplicates_dropped']} already "
            "delivered."
        )
    return 0 if ok else 1


def print_objects(gcs_url: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    os.environ["STORAGE_EMULATOR_HOST"] = gcs_url
    bucket = storage.Client(project="local", credentials=AnonymousCredentials()).bucket(
        LOCAL_BUCKET
    )
    print(f"\nObjects in gs://{LOCAL_BUCKET}:")
    first_line = None
    for blob in bucket.list_blobs():
        data = blob.download_as_bytes()
        if not blob.name.endswith(".jsonl"):  # the checkpoint: one JSON object
            print(f"  {blob.name}  {len(data):,} bytes, one JSON object (the checkpoint)")
            continue
        events = data.count(b"\n")
        print(
            f"  {blob.name}  {len(data):,} bytes, {events} events, "
            f"{blob.content_type}, metadata={blob.metadata}"
        )
        if blob.name.endswith(".jsonl") and first_line is None:
            first_line = data.splitlines()[0]
    if first_line:
        print("\nFirst event written:")
        print("  " + first_line.decode())


if __name__ == "__main__":
    sys.exit(main())
