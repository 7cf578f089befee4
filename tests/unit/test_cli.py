"""The CLI's pure parts: times, the hours checked, object names and what they can hold; and
what each command reads and says."""

import io
from types import SimpleNamespace

import pytest

from harness_audit.checkpoint import MAX_LOOKBACK_MS
from harness_audit.cli import main
from harness_audit.cli_common import UsageError, parse_time
from harness_audit.clock import iso
from harness_audit.sink import line_identities, object_name
from harness_audit.state import Lease, State, new_window
from harness_audit.verify import (
    HOUR_MS,
    MAX_WINDOW_MS,
    may_hold,
    plan_hours,
    repair_object_name,
    request_from,
    settled_until,
)

T = 1_793_491_200_000  # 2026-11-01T00:00:00Z


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-01T00:00:00Z",
        "2026-11-01T00:00Z",
        "2026-11-01",
        "2026-11-01T00:00:00+00:00",
        "2026-11-01T01:00:00+01:00",
        "2026-11-01T00:00:00.000Z",
    ],
)
def test_times_are_iso_8601_utc(text):
    assert parse_time(text, "--since") == T


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "1793491200000", "2026/11/01"])
def test_unparseable_times_name_the_option(text):
    with pytest.raises(UsageError, match=r"--until .* is not an ISO 8601 time"):
        parse_time(text, "--until")


def args(since, until, force=False):
    return SimpleNamespace(since=since, until=until, force=force, repair=False, json=False)


def test_range_checks():
    assert request_from(args("2026-11-01", "2026-12-02")).until_ms == T + 31 * 24 * HOUR_MS
    with pytest.raises(UsageError, match=r"32\.0 days, more than 31"):
        request_from(args("2026-11-01", "2026-12-03"))
    assert request_from(args("2026-11-01", "2026-12-03", force=True)).since_ms == T
    for since, until in (("2026-11-02", "2026-11-01"), ("2026-11-01", "2026-11-01T00:00Z")):
        with pytest.raises(UsageError, match="is not before --until"):
            request_from(args(since, until))


def test_settled_is_the_watermark_less_the_overlap_or_a_window_in_progress():
    assert settled_until(State(), 600_000) is None
    assert settled_until(State(watermark_ms=T), 600_000) == T - 600_000
    window = new_window(T - 600_000, T + HOUR_MS)
    lease = Lease("x", T + HOUR_MS)
    assert settled_until(State(watermark_ms=T, window=window, lease=lease), 0) == T - 600_000
    assert settled_until(State(watermark_ms=300), 600_000) == 0


def test_hours_split_by_the_range_and_the_settled_point():
    hours = plan_hours(T + 30 * 60_000, T + 3 * HOUR_MS, T + HOUR_MS + 15 * 60_000)
    assert [(iso(h.start_ms), iso(h.end_ms), h.state) for h in hours] == [
        ("2026-11-01T00:30:00.000Z", "2026-11-01T01:00:00.000Z", "checked"),
        ("2026-11-01T01:00:00.000Z", "2026-11-01T02:00:00.000Z", "partial"),
        ("2026-11-01T02:00:00.000Z", "2026-11-01T03:00:00.000Z", "in_progress"),
    ]
    assert hours[1].checked_until_ms == T + HOUR_MS + 15 * 60_000
    assert all(h.state == "in_progress" for h in plan_hours(T, T + HOUR_MS, None))


def test_names_parse_back_to_the_window_they_hold():
    start, end = T - 2 * 86_400_000, T + 5 * 60_000
    name = object_name("p/q", start, end, 12).removeprefix("p/q/")
    assert may_hold(name, start, start + 1)
    assert may_hold(name, T, T + HOUR_MS) and may_hold(name, end, end + 1)
    assert not may_hold(name, end + 1, end + HOUR_MS)
    assert not may_hold(name, start - HOUR_MS, start)


def test_repair_names_sort_with_their_hour_and_parse_back():
    name = repair_object_name("harness/audit", T, 1)
    assert name == (
        "harness/audit/2026/11/01/harness-audit-repair-20261101T000000000Z-20261101T010000000Z"
        "-0001.jsonl"
    )
    assert repair_object_name("", T, 2).startswith("2026/11/01/harness-audit-repair")
    stored = name.removeprefix("harness/audit/")
    assert may_hold(stored, T, T + 1) and may_hold(stored, T + HOUR_MS, T + HOUR_MS + 1)
    assert not may_hold(stored, T - 1, T) and not may_hold(stored, T + HOUR_MS + 1, T + 2 * HOUR_MS)
    later = repair_object_name("harness/audit", T + HOUR_MS, 1)
    assert sorted([later, name]) == [name, later]


def test_other_objects_count_for_their_folders_day_and_the_day_before():
    stored = "2026/11/02/from-the-guide.json"
    assert may_hold(stored, T, T + HOUR_MS)  # the day before
    assert may_hold(stored, T + 24 * HOUR_MS, T + 25 * HOUR_MS)
    assert not may_hold(stored, T + 48 * HOUR_MS, T + 49 * HOUR_MS)
    assert not may_hold(stored, T - 24 * HOUR_MS, T - 1)
    assert not may_hold("loose.json", 0, T)


def test_lines_are_read_in_either_layout_and_bad_lines_skipped():
    data = (
        b'{"auditId":"a","timestamp":5}\n\n{"auditEventId":"b","auditEventTime":"6"}\n'
        b"not json\n[1]\n"
    )
    assert list(line_identities(data, fallback_ms=-1)) == [("a", 5), ("b", 6)]


def test_windows_are_looked_for_a_lookback_and_an_overlap_back():
    assert MAX_WINDOW_MS == MAX_LOOKBACK_MS + 86_400_000


@pytest.mark.parametrize(
    ("command", "reads", "codes"),
    [
        ("status", ["GCS_BUCKET (required)", "STATE_KEY", "ALERT_LAG_MINUTES"], ["0", "1", "2"]),
        ("verify", ["HARNESS_API_KEY (required)", "PAGE_SIZE"], ["0", "1", "2", "3"]),
        ("check-config", ["GCS_BUCKET (required)", "HARNESS_API_KEY,"], ["0", "2"]),
    ],
)
def test_help_names_the_settings_read_and_the_exit_codes(command, reads, codes, capsys):
    assert main([command, "--help"], environ={}) == 0
    text = " ".join(capsys.readouterr().out.split())
    settings, _, exits = text.partition("exit codes:")
    for name in reads:
        assert name in settings
    assert [word for word in exits.split() if word.isdigit()] == codes
    if command == "status":
        assert "HARNESS_API_KEY" not in settings and "HARNESS_ACCOUNT_ID" not in settings


def test_status_needs_neither_the_key_nor_the_account(monkeypatch, tmp_path):
    # Past the configuration with only the bucket set: it stops at the Google login instead.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    err = io.StringIO()
    code = main(["status"], environ={"GCS_BUCKET": "harness-io-logs"}, stderr=err)
    assert code == 2
    assert "not set" not in err.getvalue()
    assert "credentials" in err.getvalue()


def test_check_config_prints_each_problem_on_its_own_line():
    out, err = io.StringIO(), io.StringIO()
    environ = {"GCS_BUCKET": "Bad_Bucket", "PAGE_SIZE": "500", "HARNESS_ACCOUNT_ID": "acct"}
    assert main(["check-config"], environ=environ, stdout=out, stderr=err) == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 2 and all(
        line.startswith("harness_audit check-config: error: ") for line in lines
    )
    assert "GCS_BUCKET='Bad_Bucket'" in lines[0] and "PAGE_SIZE=500" in lines[1]
    environ.update(GCS_BUCKET="harness-io-logs", PAGE_SIZE="50", GCS_PREFIX="/audit/")
    assert main(["check-config"], environ=environ, stdout=out, stderr=err) == 0
    assert "PAGE_SIZE=50\n" in out.getvalue() and "GCS_PREFIX=audit\n" in out.getvalue()
