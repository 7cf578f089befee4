"""``make serve``: the function served locally, for you to call, until Ctrl-C.

Starts fake-gcs-server (in memory, with the bucket) and the Harness simulator holding
``--events`` events from the last hour, then serves the function with the functions-framework
CLI in the foreground (its log lines go to this terminal) and prints the ``curl`` command that
sends it a Pub/Sub CloudEvent shaped as Cloud Scheduler delivers it. Each call is one run.

Ctrl-C (or SIGTERM) stops the function, the simulator and fake-gcs-server, in that order.
fake-gcs-server's output is discarded; the simulator's first line goes to a file read once.

The function always talks to the local stand-ins: HARNESS_ACCOUNT_ID, HARNESS_API_KEY,
HARNESS_API_BASE, GCS_BUCKET and STORAGE_EMULATOR_HOST are set here (and TRIGGER_TOPIC is
removed), and the run says so when it replaces a value from your environment. Every other
setting (OUTPUT_FORMAT, PAGE_SIZE, ...) is passed through; START_MINUTES_BACK is 120 unless set.
"""

import argparse
import contextlib
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from devtools.cloudevents import scheduler_event
from devtools.fake_gcs import FakeGcs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUCKET = "harness-audit-local"
# Set here, whatever the environment holds: a local run must never reach real services.
REPLACED = (
    "HARNESS_ACCOUNT_ID",
    "HARNESS_API_KEY",
    "HARNESS_API_BASE",
    "GCS_BUCKET",
    "STORAGE_EMULATOR_HOST",
)
# Removed: a continuation would publish to a real topic and start the deployed function.
REMOVED = ("TRIGGER_TOPIC",)
STARTUP_SECONDS = 30


class Interrupted(Exception):
    """SIGTERM, handled as Ctrl-C is."""


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when this process dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(command: list[str], **kwargs) -> subprocess.Popen:
    """A child in its own process group, so that stopping it stops whatever it forked."""
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        **kwargs,
    )


def _stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM to the child's process group, then SIGKILL to it if the child is still there.

    The group is signalled only while its leader (our child) has not been reaped, so its id
    cannot have been reused by anything else.
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _ignore_signals() -> None:
    """While the children are stopped, a second Ctrl-C must not cut that short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_simulator(stack: contextlib.ExitStack, args: argparse.Namespace) -> dict:
    """The simulator through its own command line; returns its JSON line (url, account, key)."""
    out = stack.enter_context(tempfile.TemporaryFile(mode="w+"))  # noqa: SIM115
    command = [
        sys.executable,
        "-m",
        "devtools.harness_simulator",
        "--events",
        str(args.events),
        "--port",
        str(args.harness_port),
        "--latency-ms",
        str(args.latency_ms),
    ]
    process = _spawn(command, stdout=out)
    stack.callback(_stop, process, 5)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        out.seek(0)
        line = out.readline()
        if line.endswith("\n"):
            return json.loads(line)
        if process.poll() is not None:
            raise RuntimeError(f"the Harness simulator exited with {process.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"the Harness simulator did not start within {STARTUP_SECONDS} s")


def _functions_framework() -> list[str]:
    script = Path(sys.executable).parent / "functions-framework"
    return [str(script)] if script.exists() else [sys.executable, "-m", "functions_framework"]


def _wait_until_serving(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"functions-framework exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
        except urllib.error.HTTPError:
            return  # it answers (a GET is not a CloudEvent): ready
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
        else:
            return
    raise RuntimeError(f"functions-framework did not answer within {STARTUP_SECONDS} s")


def curl_command(url: str) -> str:
    """A pasteable curl that POSTs a Cloud Scheduler-shaped Pub/Sub CloudEvent to ``url``."""
    headers, body = scheduler_event()
    lines = [f"curl -sS -w '\\nHTTP %{{http_code}}\\n' -X POST {shlex.quote(url)}"]
    lines += [f"  -H {shlex.quote(f'{name}: {value}')}" for name, value in headers.items()]
    lines.append(f"  --data {shlex.quote(body.decode())}")
    return " \\\n".join(lines)


def function_env(simulator: dict, gcs_url: str, bucket: str) -> tuple[dict[str, str], list[str]]:
    """The function's environment, and the notes on what was replaced or removed."""
    env = dict(os.environ)
    notes = [
        f"{name} from your environment is not used: make serve always uses the local stand-ins"
        for name in REPLACED
        if env.get(name)
    ]
    notes += [
        f"{name} from your environment is removed: a local run must not publish to a real topic"
        for name in REMOVED
        if env.pop(name, None)
    ]
    env.update(
        HARNESS_ACCOUNT_ID=simulator["account_id"],
        HARNESS_API_KEY=simulator["api_key"],
        HARNESS_API_BASE=simulator["url"],
        GCS_BUCKET=bucket,
        STORAGE_EMULATOR_HOST=gcs_url,
    )
    env.setdefault("START_MINUTES_BACK", "120")
    return env, notes


def serve(args: argparse.Namespace) -> int:
    if not _port_free(args.port):
        print(
            f"make serve: port {args.port} on 127.0.0.1 is in use: stop what uses it, or pick "
            f"another one (make serve SERVE_PORT=8081)",
            file=sys.stderr,
        )
        return 2
    with contextlib.ExitStack() as stack:
        try:
            return _serve(stack, args)
        finally:
            # Before the stack stops the children, whichever way _serve was left.
            _ignore_signals()


def _serve(stack: contextlib.ExitStack, args: argparse.Namespace) -> int:
    gcs = stack.enter_context(FakeGcs(args.gcs_port or None))
    gcs.create_bucket(args.bucket)
    simulator = _start_simulator(stack, args)
    env, notes = function_env(simulator, gcs.url, args.bucket)
    for note in notes:
        print(f"make serve: {note}", flush=True)
    shown = {name: env[name] for name in (*REPLACED, "START_MINUTES_BACK")}
    print(
        f"fake-gcs-server at {gcs.url} with bucket {args.bucket} (in memory); Harness "
        f"simulator at {simulator['url']} holding {args.events} events from the last hour.\n"
        "The function's settings from make serve (the rest from your environment):\n"
        + "".join(f"  {name}={value}\n" for name, value in shown.items()),
        flush=True,
    )
    url = f"http://127.0.0.1:{args.port}/"
    command = [
        *_functions_framework(),
        "--target=main",
        "--signature-type=cloudevent",
        f"--source={ROOT / 'main.py'}",
        "--host=127.0.0.1",
        f"--port={args.port}",
    ]
    function = _spawn(command, env=env)
    stack.callback(_stop, function, 10)
    _wait_until_serving(function, url)
    print(
        f"\nThe function is serving on {url}. Trigger one run (paste again for the next):\n\n"
        f"{curl_command(url)}\n\n"
        "What landed in the bucket:\n\n"
        f'curl -s {gcs.url}/storage/v1/b/{args.bucket}/o | grep -o \'"name":"[^"]*"\'\n\n'
        "Ctrl-C stops the function, the simulator and fake-gcs-server.\n",
        flush=True,
    )
    code = function.wait()
    print(f"make serve: functions-framework exited with {code}", file=sys.stderr)
    return code or 1


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.serve_local",
        description="Serve the function locally against fake-gcs-server and the Harness "
        "simulator, and print the curl command that triggers a run. Ctrl-C stops everything.",
    )
    parser.add_argument("--port", type=int, default=8080, help="the function's port")
    parser.add_argument("--gcs-port", type=int, default=0, help="fake-gcs-server's (0: free)")
    parser.add_argument("--harness-port", type=int, default=0, help="the simulator's (0: free)")
    parser.add_argument("--events", type=int, default=2500, help="events in the last hour")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulator delay per page")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET)
    args = parser.parse_args(argv)
    for name in ("port", "gcs_port", "harness_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be from 0 to 65535")
    if args.port == 0:
        parser.error("--port must be a fixed port: the curl command names it")
    if args.events < 0 or args.latency_ms < 0:
        parser.error("--events and --latency-ms must be >= 0")

    # Even when started with SIGINT ignored (a background job of a script), Ctrl-C stops it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        return serve(args)
    except (KeyboardInterrupt, Interrupted):
        # The ExitStack has stopped every child by now.
        print("\nmake serve: stopped.", flush=True)
        return 0
    except RuntimeError as error:
        print(f"make serve: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
