"""Integration fixtures: the real function, through functions-framework, against
fake-gcs-server and the project's Harness simulator, on a clock the test drives."""

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import functions_framework
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from support import ACCOUNT, API_KEY

from devtools.cloudevents import scheduler_event
from devtools.fake_clock import FakeClock
from devtools.fake_gcs import FakeGcs
from devtools.fake_pubsub import FakePubSub
from devtools.harness_simulator import HarnessSimulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fake_gcs():
    with FakeGcs() as server:
        yield server


@pytest.fixture
def bucket(fake_gcs, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    name = f"test-{uuid.uuid4().hex[:12]}"
    fake_gcs.create_bucket(name)
    client = storage.Client(project="local", credentials=AnonymousCredentials())
    return client.bucket(name)


@pytest.fixture
def clock():
    return FakeClock(start_ms=1_749_564_000_000)


@pytest.fixture
def harness(clock):
    simulator = HarnessSimulator(
        account_id=ACCOUNT, api_key=API_KEY, clock_ms=clock.now_ms, sleep=clock.sleep
    )
    simulator.start()
    yield simulator
    simulator.stop()


@dataclass
class Invocation:
    status: int
    logs: list[dict]
    stderr: str = ""

    @property
    def summary(self) -> dict:
        finals = [line for line in self.logs if "outcome" in line]
        assert len(finals) == 1, self.logs
        return finals[0]


@dataclass
class FunctionInstance:
    """One Cloud Run instance: main.py loaded once by functions-framework, invoked N times."""

    app: object
    module: object
    capsys: object
    calls: list[Invocation] = field(default_factory=list)

    def invoke(self, event: tuple[dict, bytes] | None = None) -> Invocation:
        """Deliver ``event`` (headers, body), by default a Cloud Scheduler message."""
        headers, body = event or scheduler_event()
        self.capsys.readouterr()
        response = self.app.test_client().post("/", headers=headers, data=body)
        captured = self.capsys.readouterr()
        lines = captured.out.splitlines()
        non_json = [line for line in lines if not line.startswith("{")]
        assert not non_json, f"stdout lines that are not JSON: {non_json}"
        logs = [json.loads(line) for line in lines]
        invocation = Invocation(response.status_code, logs, captured.err)
        self.calls.append(invocation)
        return invocation


@pytest.fixture
def environment(monkeypatch, bucket, harness):
    """The function's environment for this test; tests may set more before starting it."""
    values = {
        "HARNESS_ACCOUNT_ID": ACCOUNT,
        "HARNESS_API_KEY": API_KEY,
        "GCS_BUCKET": bucket.name,
        "HARNESS_API_BASE": harness.url,
        # Pacing's waits move the fake clock that most tests assert on; the pacing tests
        # turn it on themselves.
        "MAX_REQUESTS_PER_MINUTE": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in (
        "GCS_PREFIX",
        "STATE_KEY",
        "PAGE_SIZE",
        "START_MINUTES_BACK",
        "FILTER_MODULES",
        "FILTER_ACTIONS",
        "STATIC_FILTER",
        "MAX_RETRIES",
        "MAX_RUN_SECONDS",
        "OVERLAP_SECONDS",
        "MAX_OBJECT_MB",
        "OUTPUT_FORMAT",
        "TRIGGER_TOPIC",
        "ALERT_LAG_MINUTES",
        "PUBSUB_EMULATOR_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def pubsub():
    """The Pub/Sub publish endpoint, as an emulator (PUBSUB_EMULATOR_HOST=pubsub.host)."""
    with FakePubSub() as server:
        yield server


@pytest.fixture
def start_instance(environment, clock, capfd):
    def start(**env) -> FunctionInstance:
        for name, value in env.items():
            environment.setenv(name, str(value))
        app = functions_framework.create_app(
            target="main", source=str(ROOT / "main.py"), signature_type="cloudevent"
        )
        module = sys.modules["main"]
        module.CLOCK = clock
        return FunctionInstance(app, module, capfd)

    return start
