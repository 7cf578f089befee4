"""make serve's pieces: devtools/serve_local.py as a process, its printed curl, a clean stop.

Also fake_gcs's own command line, which the README gives for setting things up by hand.
"""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from devtools.fake_gcs import free_port

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "serve-test"


def wait_for(log: Path, marker: str, process: subprocess.Popen, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if marker in text:
            return text
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before {marker!r}:\n{text}")
        time.sleep(0.05)
    pytest.fail(f"no {marker!r} within {timeout} s:\n{log.read_text()}")


def printed_command(output: str, start: str) -> str:
    """The shell command that begins with ``start``, with its continuation lines."""
    lines = output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = first
    while lines[last].endswith("\\"):
        last += 1
    return "\n".join(lines[first : last + 1])


def send_as_urllib(curl: str) -> int:
    """The printed curl's request, sent with urllib (the method, URL, headers and body)."""
    words = shlex.split(curl)
    url = next(word for word in words if word.startswith("http://"))
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = words[words.index("--data") + 1].encode()
    assert words[words.index("-X") + 1] == "POST"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def object_names(listing_command: str) -> list[str]:
    url = next(word for word in shlex.split(listing_command) if word.startswith("http://"))
    with urllib.request.urlopen(url, timeout=5) as response:
        return [item["name"] for item in json.load(response).get("items", [])]


@pytest.fixture
def log_file():
    with tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log") as log:
        yield Path(log.name)


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_serve_prints_a_working_curl_and_stops_everything(stop, log_file):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TRIGGER_TOPIC"}
    with log_file.open("wb") as out:
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devtools.serve_local",
                "--port",
                str(port),
                "--events",
                "300",
                "--bucket",
                BUCKET,
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own process group, as a terminal's foreground job: Ctrl-C is sent to it.
            start_new_session=True,
        )
    try:
        output = wait_for(log_file, "Ctrl-C stops", serve)
        children = psutil.Process(serve.pid).children(recursive=True)
        assert len(children) >= 3  # fake-gcs-server, the simulator, functions-framework

        curl = printed_command(output, "curl -sS")
        for header in ("ce-id", "ce-specversion", "ce-source", "ce-time", "Content-Type"):
            assert f"-H '{header}: " in curl
        assert "-H 'ce-type: google.cloud.pubsub.topic.v1.messagePublished'" in curl
        listing = printed_command(output, "curl -s http://127.0.0.1:")

        assert send_as_urllib(curl) == 200
        assert wait_for(log_file, '"outcome": "ok"', serve)
        names = object_names(listing)
        assert "harness/state/audit-state.json" in names
        data = [name for name in names if name.startswith("harness/audit/")]
        assert len(data) == 1 and data[0].endswith("-0001.jsonl")

        if shutil.which("curl"):  # the command exactly as printed, pasted into a shell
            pasted = subprocess.run(
                ["bash", "-c", curl], capture_output=True, text=True, timeout=30, check=False
            )
            assert pasted.stdout.strip().endswith("HTTP 200"), pasted

        if stop == "ctrl-c":
            os.killpg(serve.pid, signal.SIGINT)
        else:
            serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=15) == 0
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
        assert "make serve: stopped." in log_file.read_text()
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()


def test_serve_refuses_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "devtools.serve_local", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr


def test_fake_gcs_command_line_serves_the_bucket_until_sigint(log_file):
    port = free_port()
    with log_file.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "devtools.fake_gcs", "--port", str(port), "--bucket", BUCKET],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        line = wait_for(log_file, "\n", server, timeout=20).splitlines()[0]
        info = json.loads(line)
        assert info["STORAGE_EMULATOR_HOST"] == f"http://127.0.0.1:{port}"
        children = psutil.Process(server.pid).children(recursive=True)
        with urllib.request.urlopen(f"{info['url']}/storage/v1/b/{BUCKET}", timeout=5) as got:
            assert json.load(got)["name"] == BUCKET
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
