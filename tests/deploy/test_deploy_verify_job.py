"""What deploy.sh sets up for the scheduled verify (issue 18): the second scheduler job that
publishes ``command=verify``, the verify metrics and alert conditions, and the dashboard; each
created once, current on a second run, updated when its setting changes, removed by --destroy."""

import json
import re

from deploy_sandbox import FUNCTION, PROJECT, Sandbox

TOPIC_PATH = f"projects/{PROJECT}/topics/{FUNCTION}-trigger"
VERIFY_JOB = f"{FUNCTION}-verify"
SERVICE_FILTER = f'resource.type="cloud_run_revision" AND resource.labels.service_name="{FUNCTION}"'


def config_of(result, start: str) -> dict:
    return json.loads(result.the_call(start).config_file)


def conditions(policy: dict) -> dict:
    return {condition["displayName"]: condition for condition in policy["conditions"]}


def test_the_verify_job_publishes_command_verify_daily_to_the_function_s_topic(first_run):
    result, state = first_run.result, first_run.sandbox.state
    create = result.the_call(f"scheduler jobs create pubsub {VERIFY_JOB}")
    assert create.flags["attributes"] == "command=verify"
    assert create.flags["schedule"] == "17 4 * * *"  # the default: a quiet hour, UTC
    assert create.flags["topic"] == TOPIC_PATH and create.flags["message-body"] == "{}"
    job = state["jobs"][VERIFY_JOB]
    assert (job["attributes"], job["topic"], job["time_zone"]) == (
        {"command": "verify"},
        TOPIC_PATH,
        "Etc/UTC",
    )
    # The collector's job stays as it was: no attribute, so the function collects.
    collector = result.the_call(f"scheduler jobs create pubsub {FUNCTION}-schedule")
    assert "attributes" not in collector.flags
    assert state["jobs"][f"{FUNCTION}-schedule"]["attributes"] == {}
    assert f"gcloud scheduler jobs run {VERIFY_JOB} --location=us-central1" in result.stdout


def test_the_metrics_read_the_verify_summary_s_fields(first_run):
    result = first_run.result
    for field in ("verify_missing", "verify_repaired", "events_written"):
        metric = config_of(result, f"logging metrics create {FUNCTION}_{field}")
        assert metric["filter"] == f"{SERVICE_FILTER} AND jsonPayload.{field}:*"
        assert metric["valueExtractor"] == f"EXTRACT(jsonPayload.{field})"
        assert metric["metricDescriptor"]["valueType"] == "DISTRIBUTION"
    for name, field, value in (
        ("verify_failed", "outcome", "verify_failed"),
        ("continuations", "continuation", "published"),
    ):
        metric = config_of(result, f"logging metrics create {FUNCTION}_{name}")
        assert metric["filter"] == f'{SERVICE_FILTER} AND jsonPayload.{field}="{value}"'
        assert metric["metricDescriptor"]["valueType"] == "INT64"


def test_the_policy_alerts_on_missing_on_a_failed_verify_and_on_two_days_without_one(first_run):
    (call,) = [c for c in first_run.result.calls if c.summary == "alpha monitoring policies create"]
    found = conditions(json.loads(call.config_file))
    missing = found["Verify found events missing from the bucket (repaired or not)"]
    threshold = missing["conditionThreshold"]
    assert f"user/{FUNCTION}_verify_missing" in threshold["filter"]
    assert (threshold["comparison"], threshold["thresholdValue"]) == ("COMPARISON_GT", 0)
    assert threshold["aggregations"][0]["perSeriesAligner"] == "ALIGN_MEAN"  # exact, not a bucket
    failed = next(c for name, c in found.items() if name.startswith("A verify failed"))
    threshold = failed["conditionThreshold"]
    assert f"user/{FUNCTION}_verify_failed" in threshold["filter"]
    assert (threshold["comparison"], threshold["thresholdValue"]) == ("COMPARISON_GT", 0)
    absent = found["No verify summary for two days (VERIFY_SCHEDULE)"]["conditionAbsent"]
    assert f"user/{FUNCTION}_verify_missing" in absent["filter"]
    # Cloud Monitoring's longest window and wait, one after the other: 47 hours.
    assert absent["duration"] == absent["aggregations"][0]["alignmentPeriod"] == "84600s"


def test_a_verify_rarer_than_daily_has_no_absence_condition(tmp_path):
    result = Sandbox(tmp_path).run("--yes", env={"VERIFY_SCHEDULE": "17 4 * * 0"})
    assert result.returncode == 0, result.output
    policy = config_of(result, "alpha monitoring policies create")
    names = [condition["displayName"] for condition in policy["conditions"]]
    assert "No verify summary for two days (VERIFY_SCHEDULE)" not in names
    assert any(name.startswith("A verify failed") for name in names)


def test_the_dashboard_charts_the_log_based_metrics(first_run):
    result, state = first_run.result, first_run.sandbox.state
    dashboard = config_of(result, "monitoring dashboards create")
    assert dashboard["labels"]["harness_collector"] == FUNCTION
    widgets = {widget["title"]: widget for widget in dashboard["gridLayout"]["widgets"]}
    titles = " | ".join(widgets)
    for chart in ("Events written per hour", "Lag", "Failed runs", "Continuations", "Verify"):
        assert chart in titles
    # Every chart reads a metric deploy.sh created: by its type, or by its PromQL name.
    promql_prefix = f"logging_googleapis_com:user_{FUNCTION.replace('-', '_')}_"
    charted = set()
    for widget in widgets.values():
        for data_set in widget["xyChart"]["dataSets"]:
            query = data_set["timeSeriesQuery"]
            if "prometheusQuery" in query:
                (name,) = re.findall(
                    re.escape(promql_prefix) + r"(\w+)_sum\{", query["prometheusQuery"]
                )
                charted.add(f"{FUNCTION}_{name}")
            else:
                charted.add(query["timeSeriesFilter"]["filter"].split('"')[1].rsplit("/")[-1])
    assert charted == {
        f"{FUNCTION}_{name}"
        for name in (
            "events_written",
            "lag_seconds",
            "runs_failed",
            "continuations",
            "verify_missing",
            "verify_repaired",
            "verify_failed",
        )
    }
    assert charted <= set(state["metrics"])
    (stored,) = state["dashboards"].values()
    assert stored["labels"]["deploy_hash"] == dashboard["labels"]["deploy_hash"]


def test_a_second_run_creates_nothing(deployed):
    result = deployed.run()  # no --yes and no terminal: any change would be refused
    assert result.returncode == 0, result.output
    assert result.changes == []
    assert f"{VERIFY_JOB} exists, schedule unchanged" in result.stdout
    assert "dashboard" in result.stdout and "exists, current" in result.stdout


def test_a_new_verify_schedule_updates_that_job_only(deployed):
    result = deployed.run("--yes", env={"VERIFY_SCHEDULE": "41 3 * * *"})
    assert result.returncode == 0, result.output
    # The policy's absence condition does not depend on the hour: only the job changes.
    assert result.changes == [f"scheduler jobs update pubsub {VERIFY_JOB}"]
    update = result.the_call(f"scheduler jobs update pubsub {VERIFY_JOB}")
    assert update.flags["update-attributes"] == "command=verify"
    assert deployed.state["jobs"][VERIFY_JOB]["schedule"] == "41 3 * * *"
    assert deployed.run(env={"VERIFY_SCHEDULE": "41 3 * * *"}).changes == []


def test_a_verify_job_that_lost_its_attribute_is_put_back(deployed):
    state = deployed.state
    state["jobs"][VERIFY_JOB]["attributes"] = {}  # it would collect instead of verifying
    deployed.seed(state)
    result = deployed.run("--yes")
    assert result.changes == [f"scheduler jobs update pubsub {VERIFY_JOB}"]
    assert deployed.state["jobs"][VERIFY_JOB]["attributes"] == {"command": "verify"}


def test_a_dashboard_changed_by_hand_is_put_back(deployed):
    state = deployed.state
    (name,) = state["dashboards"]
    state["dashboards"][name]["labels"]["deploy_hash"] = "edited"
    deployed.seed(state)
    result = deployed.run("--yes")
    assert result.changes == [f"monitoring dashboards update {name}"]


def test_an_invalid_verify_schedule_is_refused_before_any_change(tmp_path):
    result = Sandbox(tmp_path).run("--yes", env={"VERIFY_SCHEDULE": "daily"})
    assert result.returncode == 2
    assert "VERIFY_SCHEDULE='daily' is not a cron expression" in result.stderr
    assert result.changes == []


def test_the_dry_run_prints_the_job_and_the_dashboard(tmp_path):
    result = Sandbox(tmp_path).run("--dry-run")
    assert result.returncode == 0, result.output
    assert result.changes == []
    lines = result.stdout.splitlines()
    job = next(
        line
        for line in lines
        if line.startswith(f"gcloud scheduler jobs create pubsub {VERIFY_JOB}")
    )
    assert "--attributes=command=verify" in job
    assert any(
        line.startswith("gcloud monitoring dashboards create --config-from-file=") for line in lines
    )
