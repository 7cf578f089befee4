"""The function served by the functions-framework CLI in its own process, as Cloud Run does."""

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from devtools.cloudevents import scheduler_event
from devtools.fake_gcs import free_port

ROOT = Path(__file__).resolve().parents[1]


class FunctionProcess:
    """``functions-framework --target main --signature-type cloudevent`` on a free port.

    Its output goes to a file (read with ``read_output``), never to a pipe nobody reads.
    """

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        # Outlives this call on purpose: the function writes to it until stop().
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="function-", suffix=".log", delete=False
        )
        self._offset = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> "FunctionProcess":
        command = [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            "main",
            "--signature-type",
            "cloudevent",
            "--source",
            str(ROOT / "main.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"functions-framework exited:\n{self.read_output()}")
            try:
                urllib.request.urlopen(self.url, timeout=1)
            except urllib.error.HTTPError:
                return self  # it answers (a GET is not a CloudEvent): ready
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError("functions-framework did not start within 30 s")

    def invoke(self, timeout: float = 600, event: tuple[dict, bytes] | None = None) -> int:
        """POST a Pub/Sub CloudEvent, by default Cloud Scheduler's; return the HTTP status."""
        headers, body = event or scheduler_event()
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def read_output(self) -> str:
        """What the function printed since the last call."""
        with open(self._log.name, "rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        return data.decode(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> "FunctionProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
