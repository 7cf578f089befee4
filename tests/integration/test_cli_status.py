"""``python -m harness_audit status``: the checkpoint read back for a person or a script."""

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import HOUR_MS, MIN_MS, STATE_KEY, publish

from devtools.sample_events import generate_events
from harness_audit import status as status_module
from harness_audit.cli import main
from harness_audit.clock import iso
from harness_audit.paging import NEWEST_FIRST, Position
from harness_audit.sink import object_name
from harness_audit.state import Lease, State, WindowProgress, encode_state

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def status(clock, *args):
    out, err = io.StringIO(), io.StringIO()
    code = main(["status", *args], clock=clock, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def status_json(clock):
    code, out, err = status(clock, "--json")
    return code, json.loads(out), err


def test_fresh_bucket_has_no_checkpoint_yet(environment, clock, bucket):
    code, out, err = status(clock)
    assert code == 0, err
    assert f"gs://{bucket.name}/{STATE_KEY}" in out
    assert "none yet: the collector has not run" in out
    assert "last objects none under the prefix" in out
    code, document, _ = status_json(clock)
    assert code == 0 and document["exists"] is False and document["recent_objects"] == []


def test_after_a_run_watermark_lag_free_lease_and_last_objects(
    start_instance, harness, clock, bucket
):
    t0 = clock.now_ms()
    publish(harness, generate_events(300, t0 - HOUR_MS, t0 - 1, seed=81))
    instance = start_instance(MAX_OBJECT_MB="0.02")
    assert instance.invoke().status == 200
    clock.advance(25 * 60)
    code, out, _ = status(clock)
    assert code == 0, out
    assert f"watermark    {iso(t0)}" in out
    assert "lag          25 min 0 s  ok (alert over 180 min)" in out
    assert "window       none in progress" in out
    assert "lease        free" in out
    written = sorted(blob.name for blob in bucket.list_blobs(prefix="harness/audit/"))
    assert len(written) > 5
    code, document, _ = status_json(clock)
    assert document["watermark_ms"] == t0 and document["lag_seconds"] == 1500
    assert document["lease"] == {"state": "free"} and document["window"] is None
    recent = [item["uri"] for item in document["recent_objects"]]
    assert len(recent) == 5 and recent[0] == f"gs://{bucket.name}/{written[-1]}"
    assert all(item["events"] > 0 for item in document["recent_objects"])
    assert document["ok"] is True and document["problems"] == []


def test_a_held_lease_and_a_window_in_progress(environment, clock, bucket):
    t0 = clock.now_ms()
    start, end = t0 - 70 * MIN_MS, t0 - 5 * MIN_MS
    position = Position(start, t0 - 30 * MIN_MS, order=NEWEST_FIRST)
    window = WindowProgress(start, end, position, next_part=3, pages=40, events_written=2_000)
    state = State(
        watermark_ms=t0 - 60 * MIN_MS,
        window=window,
        lease=Lease("run-4f2a", t0 + 7 * MIN_MS),
    )
    bucket.blob(STATE_KEY).upload_from_string(encode_state(state, updated_ms=t0, version="t"))
    generation = bucket.get_blob(STATE_KEY).generation
    code, out, _ = status(clock)
    assert code == 0, out
    assert f"window       in progress: {iso(start)} .. {iso(end)}" in out
    assert f"still to read {iso(start)} .. {iso(t0 - 30 * MIN_MS)} (newest first)" in out
    assert "2 parts, 2000 events written, 40 pages read" in out
    for part in (1, 2):
        assert f"gs://{bucket.name}/{object_name('harness/audit', start, end, part)}" in out
    assert f"held by run run-4f2a until {iso(t0 + 7 * MIN_MS)} (7 min 0 s left)" in out
    code, document, _ = status_json(clock)
    assert document["lease"]["state"] == "held" and document["lease"]["seconds_left"] == 420
    assert document["window"]["parts_written"] == 2
    assert document["window"]["read_percent"] == pytest.approx(38.5, abs=0.1)
    assert bucket.get_blob(STATE_KEY).generation == generation  # read, never written

    clock.advance(10 * 60)
    assert "expired 3 min 0 s ago (run run-4f2a" in status(clock)[1]


def test_a_corrupt_checkpoint_exits_1_with_the_functions_message(environment, clock, bucket):
    bucket.blob(STATE_KEY).upload_from_string(b"{not json")
    code, out, err = status(clock)
    assert code == 1 and err == ""
    assert "UNREADABLE: The checkpoint" in out and "cannot be used" in out
    assert f"gcloud storage cat gs://{bucket.name}/{STATE_KEY}" in out
    code, document, _ = status_json(clock)
    assert code == 1 and document["ok"] is False
    assert document["problems"] == ["checkpoint unreadable"]
    assert "it is not valid JSON" in document["error"]


def test_lag_over_alert_lag_minutes_exits_1(start_instance, harness, clock, bucket, environment):
    t0 = clock.now_ms()
    publish(harness, generate_events(50, t0 - HOUR_MS, t0 - 1, seed=82))
    assert start_instance().invoke().status == 200
    clock.advance(4 * 3600)
    code, out, _ = status(clock)
    assert code == 1
    assert "lag          4 h 0 min  ALERT (alert over 180 min)" in out
    code, document, _ = status_json(clock)
    assert code == 1 and document["lag_alert"] is True
    assert document["problems"] == ["lag over ALERT_LAG_MINUTES=180"]
    environment.setenv("ALERT_LAG_MINUTES", "300")
    assert status(clock)[0] == 0


def test_usage_and_configuration_errors_exit_2(environment, clock):
    code, _, err = status(clock, "--verbose")
    assert code == 2 and err.startswith("harness_audit status: error: unrecognized arguments")
    environment.setenv("STATE_KEY", "harness/state/")
    code, _, err = status(clock)
    assert code == 2 and err.count("\n") == 1 and "STATE_KEY='harness/state/' names a folder" in err


def test_a_missing_google_login_is_one_line(environment, clock, tmp_path):
    environment.delenv("STORAGE_EMULATOR_HOST")
    environment.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    code, out, err = status(clock)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "gcloud auth application-default login" in err


def test_python_m_harness_audit_status_runs_as_a_process(environment, bucket):
    completed = subprocess.run(
        [sys.executable, "-m", "harness_audit", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["exists"] is False
    assert os.environ["HARNESS_API_KEY"] not in completed.stdout + completed.stderr


def test_an_unreachable_cloud_storage_is_one_short_line_within_seconds(
    environment, clock, monkeypatch
):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(status_module, "CALL_SECONDS", 1.0)
    started = time.monotonic()
    code, out, err = status(clock)
    # Bounded by CALL_SECONDS (and one request's timeout), not the library's 120 s retry.
    assert time.monotonic() - started < 10
    assert code == 3 and out == "" and err.count("\n") == 1
    assert "Cloud Storage did not answer" in err and "ConnectionError" in err
    assert len(err) < 200
