"""``make bench``: the real function, through functions-framework, against fake-gcs-server
and the Harness simulator with a fixed per-page latency. One JSON line per case, then one
per target with its verdict; the exit status is 1 when a target is missed.

The API floor is what any sequential pager must spend: pages x per-page latency. The
function process is started and ready before the clock starts (Cloud Run's cold start is
not the collector's); wall time runs from the CloudEvent POST to its HTTP answer, which
comes after the last object and the checkpoint are written. Peak RSS is the gunicorn
worker's high-water mark (VmHWM), read after the run.

The backlog case measures continuation: a backlog several MAX_RUN_SECONDS=10 runs long,
paced at MAX_REQUESTS_PER_MINUTE, drained from one trigger with each published
continuation delivered (by a fake Pub/Sub endpoint) as the next invocation. Its time to
drain, from the first POST to the last run's answer, is compared with the time the rate
allows: pages needed (events / PAGE_SIZE) / requests per minute. It paces at 1000 a minute
rather than Harness's 400 so that it takes seconds, not minutes; the ratio is what carries
over, and at 400 a minute the fixed cost of each hand-off weighs less.

Usage: python -m benchmarks.run [--case NAME ...] [--output-format api|streaming ...]
"""

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from devtools.fake_gcs import FakeGcs
from devtools.fake_pubsub import FakePubSub
from devtools.function_process import FunctionProcess
from devtools.harness_simulator import DEFAULT_ACCOUNT_ID, DEFAULT_API_KEY

ROOT = Path(__file__).resolve().parents[1]

PAGE_SIZE = 100
CASES = {
    # name: (events, per-page latency in ms, MAX_REQUESTS_PER_MINUTE, simulator throttle)
    # 200 ms a page is a real API's response time; pacing as deployed.
    "latency-3k-200ms": (3_000, 200.0, 360, None),
    # Pacing off: these measure the collector itself.
    "baseline-1k-1ms": (1_000, 1.0, 0, None),
    "volume-100k-1ms": (100_000, 1.0, 0, None),
    "volume-200k-1ms": (200_000, 1.0, 0, None),
    # Harness's edge throttle, modelled as 100 requests per 10 s, paced at 540 a minute.
    "throttle-18k-540rpm": (18_000, 1.0, 540, "100/10"),
}
# The layout's cost where the API bounds the run (a target) and where the CPU does (shown).
STREAMING_CASES = ("latency-3k-200ms", "volume-200k-1ms")
# name: (events, per-page latency in ms, MAX_REQUESTS_PER_MINUTE, MAX_RUN_SECONDS)
BACKLOG_CASES = {
    "backlog-30k-1000rpm": (30_000, 20.0, 1000, 10),
}
BACKLOG_TOPIC = "projects/bench-project/topics/harness-audit-trigger"
# Invocations after which a backlog case gives up (continuations that never stop).
MAX_BACKLOG_RUNS = 50


def peak_rss_mb(process: psutil.Process) -> float:
    peaks = []
    for member in [process, *process.children(recursive=True)]:
        try:
            with open(f"/proc/{member.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
        except FileNotFoundError:
            continue
    return max(peaks)


class SimulatorProcess:
    """The Harness simulator in a process of its own, so that its CPU is not the function's
    nor the driver's."""

    def __init__(self, events: int, latency_ms: float, throttle: str | None):
        self._log = tempfile.NamedTemporaryFile(prefix="simulator-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devtools.harness_simulator",
                "--events",
                str(events),
                "--latency-ms",
                str(latency_ms),
                "--seed",
                "42",
                *(["--throttle", throttle] if throttle else []),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with open(self._log.name) as log:
                first = log.readline()
            if first.startswith("{"):
                self.url = json.loads(first)["url"]
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"simulator exited: {Path(self._log.name).read_text()}")
            time.sleep(0.1)
        raise RuntimeError("simulator did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log.close()


def function_env(simulator: SimulatorProcess, gcs: FakeGcs, **settings: str) -> dict[str, str]:
    """The function's environment in a benchmark: the stand-ins, then the case's settings."""
    return {
        "HARNESS_ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
        "HARNESS_API_KEY": DEFAULT_API_KEY,
        "HARNESS_API_BASE": simulator.url,
        "GCS_BUCKET": "bench",
        "STORAGE_EMULATOR_HOST": gcs.url,
        "PAGE_SIZE": str(PAGE_SIZE),
        # The simulator stamps its events over the hour before it started.
        "START_MINUTES_BACK": "90",
        # As deploy.sh deploys the function: a fixed glibc mmap threshold, so each part's
        # buffers go back to the system when freed instead of growing the heap.
        "MALLOC_MMAP_THRESHOLD_": "131072",
        **settings,
    }


def run_case(name: str, output_format: str) -> dict:
    events_count, latency_ms, requests_per_minute, throttle = CASES[name]
    simulator = SimulatorProcess(events_count, latency_ms, throttle)
    try:
        with FakeGcs() as gcs:
            gcs.create_bucket("bench")
            env = function_env(
                simulator,
                gcs,
                OUTPUT_FORMAT=output_format,
                MAX_REQUESTS_PER_MINUTE=str(requests_per_minute),
            )
            with FunctionProcess(env) as function:
                started = time.perf_counter()
                status = function.invoke()
                wall = time.perf_counter() - started
                rss = peak_rss_mb(psutil.Process(function.process.pid))
                output = function.read_output()
    finally:
        simulator.stop()
    summary = next(
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and '"outcome"' in line
    )
    requests = summary["requests"]
    pages = summary["pages"]
    floor = pages * latency_ms / 1000
    return {
        "case": name,
        "output_format": output_format,
        "status": status,
        "events": summary["events_written"],
        "pages": pages,
        "api_latency_ms": latency_ms,
        "max_requests_per_minute": requests_per_minute,
        "wall_s": round(wall, 3),
        "api_floor_s": round(floor, 3),
        "wall_over_floor": round(wall / floor, 3),
        "events_per_s": round(summary["events_written"] / wall),
        "peak_rss_mb": round(rss, 1),
        "requests": requests,
        "objects": len(summary["objects"]),
        "retries": summary["retries"],
        "requests_per_minute": round(requests / wall * 60, 1),
    }


def run_backlog_case(
    name: str, events_count: int, latency_ms: float, per_minute: int, run_seconds: int
) -> dict:
    simulator = SimulatorProcess(events_count, latency_ms, None)
    try:
        with FakeGcs() as gcs, FakePubSub() as pubsub:
            gcs.create_bucket("bench")
            env = function_env(
                simulator,
                gcs,
                PUBSUB_EMULATOR_HOST=pubsub.host,
                TRIGGER_TOPIC=BACKLOG_TOPIC,
                MAX_REQUESTS_PER_MINUTE=str(per_minute),
                MAX_RUN_SECONDS=str(run_seconds),
            )
            with FunctionProcess(env) as function:
                statuses = []
                started = time.perf_counter()
                statuses.append(function.invoke())
                while (messages := pubsub.take()) and len(statuses) < MAX_BACKLOG_RUNS:
                    statuses.extend(function.invoke(event=m.event()) for m in messages)
                wall = time.perf_counter() - started
                output = function.read_output()
    finally:
        simulator.stop()
    summaries = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and '"outcome"' in line
    ]
    pages_needed = math.ceil(events_count / PAGE_SIZE)
    allowed = pages_needed * 60 / per_minute
    return {
        "case": name,
        "status": sorted(set(statuses)),
        "runs": len(summaries),
        "continuation": [summary.get("continuation") for summary in summaries],
        "window_complete": bool(summaries) and summaries[-1]["window_complete"],
        "events": sum(summary["events_written"] for summary in summaries),
        "pages_needed": pages_needed,
        "requests": sum(summary["requests"] for summary in summaries),
        "max_requests_per_minute": per_minute,
        "max_run_seconds": run_seconds,
        "api_latency_ms": latency_ms,
        "drain_s": round(wall, 3),
        "rate_allowed_s": round(allowed, 3),
        "drain_over_allowed": round(wall / allowed, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted([*CASES, *BACKLOG_CASES]))
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per case; the median run is reported"
    )
    parser.add_argument(
        "--output-format",
        action="append",
        choices=("api", "streaming"),
        help="layouts to run (default: both; streaming on the two main cases)",
    )
    args = parser.parse_args()
    names = args.case or [*CASES, *BACKLOG_CASES]
    formats = args.output_format or ["api", "streaming"]
    results = {}
    for name in names:
        if name in BACKLOG_CASES:
            runs = sorted(
                (run_backlog_case(name, *BACKLOG_CASES[name]) for _ in range(max(1, args.repeat))),
                key=lambda run: run["drain_s"],
            )
            result = {
                **runs[len(runs) // 2],
                "repeats": len(runs),
                "drain_s_all": [run["drain_s"] for run in runs],
            }
            results[(name, "api")] = result
            print(json.dumps(result), flush=True)
            continue
        for output_format in formats:
            if output_format == "streaming" and name not in STREAMING_CASES and not args.case:
                continue
            runs = sorted(
                (run_case(name, output_format) for _ in range(max(1, args.repeat))),
                key=lambda run: run["wall_s"],
            )
            result = {
                **runs[len(runs) // 2],
                "runs": len(runs),
                "wall_s_all": [run["wall_s"] for run in runs],
            }
            results[(name, output_format)] = result
            print(json.dumps(result), flush=True)
    print(json.dumps({"machine": machine()}), flush=True)
    verdicts = check_targets(results)
    for line in verdicts:
        print(json.dumps(line), flush=True)
    missed = [line["target"] for line in verdicts if line["met"] is False]
    if missed:
        print(f"make bench: target missed: {'; '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


def machine() -> str:
    """The CPU model and count, so figures can be compared with where they were taken."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {psutil.cpu_count()} CPUs"


def check_targets(results: dict) -> list[dict]:
    """The targets from the paging issue. ``met`` None: shown, not a target."""
    verdicts = []
    latency = results.get(("latency-3k-200ms", "api"))
    if latency:
        verdicts.append(
            {
                "target": "wall/floor <= 1.05 at 200 ms a page",
                "value": latency["wall_over_floor"],
                "met": latency["wall_over_floor"] <= 1.05,
            }
        )
    volume = results.get(("volume-200k-1ms", "api"))
    if volume:
        verdicts.append(
            {
                "target": ">= 10,000 events/s at 1 ms a page, pacing off",
                "value": volume["events_per_s"],
                "met": volume["events_per_s"] >= 10_000,
            }
        )
    peaks = {
        name: results[(name, "api")]["peak_rss_mb"]
        for name in ("baseline-1k-1ms", "volume-100k-1ms", "volume-200k-1ms")
        if (name, "api") in results
    }
    if {"volume-100k-1ms", "volume-200k-1ms"} <= peaks.keys():
        growth = peaks["volume-200k-1ms"] - peaks["volume-100k-1ms"]
        verdicts.append(
            {
                "target": "peak RSS at 200k <= peak at 100k + 8 MB",
                "value": round(growth, 1),
                "met": growth <= 8,
            }
        )
    if {"baseline-1k-1ms", "volume-100k-1ms"} <= peaks.keys():
        growth = peaks["volume-100k-1ms"] - peaks["baseline-1k-1ms"]
        verdicts.append(
            {
                "target": "peak RSS at 100k <= peak at 1k + 40 MB",
                "value": round(growth, 1),
                "met": growth <= 40,
            }
        )
    throttled = results.get(("throttle-18k-540rpm", "api"))
    if throttled:
        retries = throttled["retries"].get("http_429", 0)
        verdicts.append(
            {
                "target": "no 429 from a 100-per-10-s throttle at 540/min",
                "value": retries,
                "met": retries == 0,
            }
        )
        pace = throttled["requests"] * 60 / 540
        verdicts.append(
            {
                "target": "no slower than 540 requests a minute by more than 15%",
                "value": round(throttled["wall_s"] / pace, 3),
                "met": throttled["wall_s"] <= 1.15 * pace,
            }
        )
    backlog = results.get(("backlog-30k-1000rpm", "api"))
    if backlog:
        verdicts.append(
            {
                "target": "backlog drained from one trigger in <= 1.2x the rate-allowed time",
                "value": backlog["drain_over_allowed"],
                "met": backlog["window_complete"]
                and backlog["status"] == [200]
                and backlog["drain_over_allowed"] <= 1.2,
            }
        )
    for name in STREAMING_CASES:
        api, streaming = results.get((name, "api")), results.get((name, "streaming"))
        if api and streaming:
            extra = streaming["wall_s"] / api["wall_s"] - 1
            bounded_by_api = CASES[name][1] >= 100
            verdicts.append(
                {
                    "target": f"streaming layout < 10% more time per event ({name})"
                    if bounded_by_api
                    else f"streaming layout's CPU cost when nothing else bounds it ({name})",
                    "value": f"{extra:+.1%}",
                    "met": extra < 0.10 if bounded_by_api else None,
                }
            )
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
