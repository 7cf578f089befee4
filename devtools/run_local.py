"""``make run``: one real run of the function, through functions-framework, locally.

With no Harness credentials in the environment it starts the embedded stand-ins:
fake-gcs-server (in memory) and the project's Harness simulator, seeded with realistic
events and a 429 plus a truncated response to retry through. It then invokes the function
with a Pub/Sub CloudEvent shaped as Cloud Scheduler delivers it, prints the function's
log lines and what was written, and invokes it once more to show that a second run
writes nothing twice.

With HARNESS_ACCOUNT_ID, HARNESS_API_KEY and GCS_BUCKET set (and Google credentials, e.g.
``gcloud auth application-default login``) it runs once against the real services.
"""

import json
import os
import sys
import time

from devtools.fake_gcs import FakeGcs
from devtools.function_process import FunctionProcess
from devtools.harness_simulator import DEFAULT_ACCOUNT_ID, DEFAULT_API_KEY, HarnessSimulator
from devtools.sample_events import generate_events

REAL = ("HARNESS_ACCOUNT_ID", "HARNESS_API_KEY", "GCS_BUCKET")
LOCAL_BUCKET = "harness-audit-local"


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
        "stand-ins (fake-gcs-server and the Harness simulator).\n"
    )
    now_ms = time.time_ns() // 1_000_000
    events = generate_events(2_500, now_ms - 110 * 60_000, now_ms - 1_000, seed=7)
    with FakeGcs() as gcs, HarnessSimulator() as harness:
        gcs.create_bucket(LOCAL_BUCKET)
        harness.add_events(events)
        harness.inject("429", "truncated_200")
        env = {
            "HARNESS_ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
            "HARNESS_API_KEY": DEFAULT_API_KEY,
            "HARNESS_API_BASE": harness.url,
            "GCS_BUCKET": LOCAL_BUCKET,
            "STORAGE_EMULATOR_HOST": gcs.url,
            "START_MINUTES_BACK": "120",
            "MAX_OBJECT_MB": os.environ.get("MAX_OBJECT_MB", "1"),
            "OUTPUT_FORMAT": os.environ.get("OUTPUT_FORMAT", "api"),
        }
        print(
            f"Harness simulator at {harness.url} holding {len(events)} events from the last "
            f"110 minutes; fake-gcs-server at {gcs.url}, bucket {LOCAL_BUCKET}."
        )
        with FunctionProcess(env) as function:
            print("\nRun 1 (a Cloud Scheduler Pub/Sub message through functions-framework):")
            status = function.invoke()
            first = show(function.read_output())
            print("\nRun 2, straight after (re-reads the overlap, writes nothing twice):")
            status_2 = function.invoke()
            second = show(function.read_output())
        print_objects(gcs.url)
    ok = status == status_2 == 200 and first and second
    if ok:
        print(
            f"\nRun 1 wrote {first['events_written']} events in {len(first['objects'])} "
            f"object(s) after {sum(first['retries'].values())} retried request(s); run 2 "
            f"wrote {second['events_written']} and dropped {second['duplicates_dropped']} "
            "already delivered."
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
        count = data.count(b"\n")
        print(
            f"  {blob.name}  {len(data):,} bytes, {count} lines, {blob.content_type}, "
            f"metadata={blob.metadata}"
        )
        if blob.name.endswith(".jsonl") and first_line is None:
            first_line = data.splitlines()[0]
    if first_line:
        print("\nFirst event written:")
        print("  " + first_line.decode())


if __name__ == "__main__":
    sys.exit(main())
