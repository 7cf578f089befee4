"""The log-based metrics and the alert policy deploy.sh sets up: what the files it passes to gcloud
say (filters, extractor, buckets, windows, thresholds, channel), how the windows follow the
schedule (by the rule of schedule_interval_minutes), and that they are created once, updated
when they differ, and removed by --destroy."""

import json

import pytest
from deploy_sandbox import FUNCTION, PROJECT, Sandbox

SERVICE_FILTER = f'resource.type="cloud_run_revision" AND resource.labels.service_name="{FUNCTION}"'
CHANNEL = f"projects/{PROJECT}/notificationChannels/1234567"


def config_of(result, start: str) -> dict:
    return json.loads(result.the_call(start).config_file)


def policy_of(result) -> dict:
    """The policy file of the run's one create or update of the alert policy."""
    (call,) = [
        call
        for call in result.calls
        if call.positionals[:3] == ["alpha", "monitoring", "policies"]
        and call.positionals[3] in ("create", "update")
    ]
    return json.loads(call.config_file)


def conditions(policy: dict) -> dict:
    return {
        next(kind for kind in condition if kind.startswith("condition")) + ":" + metric: condition
        for condition in policy["conditions"]
        for metric in [
            next(v for k, v in condition.items() if k.startswith("condition"))["filter"]
            .split('"')[1]
            .removeprefix("logging.googleapis.com/user/")
        ]
    }


def test_metrics_count_the_function_s_run_summaries(first_run):
    result = first_run.result
    ok = config_of(result, f"logging metrics create {FUNCTION}_runs_ok")
    failed = config_of(result, f"logging metrics create {FUNCTION}_runs_failed")
    lag = config_of(result, f"logging metrics create {FUNCTION}_lag_seconds")

    assert ok["filter"] == f'{SERVICE_FILTER} AND jsonPayload.outcome="ok"'
    assert failed["filter"] == f'{SERVICE_FILTER} AND jsonPayload.outcome="failed"'
    for counter in (ok, failed):
        assert counter["metricDescriptor"] == {
            "metricKind": "DELTA",
            "valueType": "INT64",
            "unit": "1",
        }
        assert "valueExtractor" not in counter

    # Lag from the summaries of runs that held the lease (a skipped run says nothing of it).
    assert lag["filter"] == (
        f'{SERVICE_FILTER} AND (jsonPayload.outcome="ok" OR jsonPayload.outcome="failed")'
        " AND jsonPayload.lag_seconds:*"
    )
    assert lag["valueExtractor"] == "EXTRACT(jsonPayload.lag_seconds)"
    assert lag["metricDescriptor"]["valueType"] == "DISTRIBUTION"
    bounds = lag["bucketOptions"]["explicitBuckets"]["bounds"]
    assert bounds == sorted(set(bounds))
    assert 180 * 60 in bounds  # the default threshold is a bucket bound


def test_policy_alerts_on_absence_lag_and_repeated_failures(first_run):
    policy = policy_of(first_run.result)
    assert policy["combiner"] == "OR"
    assert policy["enabled"] is True
    assert policy["notificationChannels"] == []
    assert policy["userLabels"]["harness_collector"] == FUNCTION
    assert "gcloud functions logs read" in policy["documentation"]["content"]
    found = conditions(policy)
    assert set(found) == {
        f"conditionAbsent:{FUNCTION}_runs_ok",
        f"conditionThreshold:{FUNCTION}_lag_seconds",
        f"conditionThreshold:{FUNCTION}_runs_failed",
        f"conditionThreshold:{FUNCTION}_verify_missing",
        f"conditionThreshold:{FUNCTION}_verify_failed",
        f"conditionAbsent:{FUNCTION}_verify_missing",
    }
    group = ["resource.label.service_name"]

    # Hourly schedule: no successful run for two hours.
    absent = found[f"conditionAbsent:{FUNCTION}_runs_ok"]["conditionAbsent"]
    assert absent["duration"] == "7200s"
    assert absent["aggregations"][0]["groupByFields"] == group

    lag = found[f"conditionThreshold:{FUNCTION}_lag_seconds"]["conditionThreshold"]
    assert lag["comparison"] == "COMPARISON_GT"
    assert lag["thresholdValue"] == 180 * 60
    assert lag["aggregations"][0]["perSeriesAligner"] == "ALIGN_PERCENTILE_99"
    assert lag["aggregations"][0]["alignmentPeriod"] == "3600s"

    # Two failures within two schedule intervals: "more than 1" summed over 2 hours.
    failed = found[f"conditionThreshold:{FUNCTION}_runs_failed"]["conditionThreshold"]
    assert (failed["comparison"], failed["thresholdValue"]) == ("COMPARISON_GT", 1)
    assert failed["aggregations"][0] == {
        "alignmentPeriod": "7200s",
        "perSeriesAligner": "ALIGN_SUM",
        "crossSeriesReducer": "REDUCE_SUM",
        "groupByFields": group,
    }
    assert failed["duration"] == "0s"


@pytest.mark.parametrize(
    ("schedule", "two_intervals", "lag_window", "absence"),
    [
        ("*/15 * * * *", 30, 15, True),
        ("0 */6 * * *", 720, 360, True),
        ("0,10 * * * *", 120, 60, True),  # hour "*": at most an hour apart
        ("5,35 */2 * * *", 240, 120, True),  # hour "*/2": at most two hours apart
        ("0 9 * * MON-FRI", 1410, 1410, False),  # Friday to Monday: longer than any window
        ("0 0 1 * *", 1410, 1410, False),
    ],
)
def test_windows_follow_the_schedule(tmp_path, schedule, two_intervals, lag_window, absence):
    result = Sandbox(tmp_path).run("--yes", env={"SCHEDULE": schedule})
    assert result.returncode == 0, result.output
    found = conditions(policy_of(result))
    failed = found[f"conditionThreshold:{FUNCTION}_runs_failed"]["conditionThreshold"]
    assert failed["aggregations"][0]["alignmentPeriod"] == f"{two_intervals * 60}s"
    lag = found[f"conditionThreshold:{FUNCTION}_lag_seconds"]["conditionThreshold"]
    assert lag["aggregations"][0]["alignmentPeriod"] == f"{lag_window * 60}s"
    if absence:
        absent = found[f"conditionAbsent:{FUNCTION}_runs_ok"]["conditionAbsent"]
        assert absent["duration"] == f"{two_intervals * 60}s"
        assert failed["thresholdValue"] == 1
    else:
        # Cloud Monitoring cannot wait two runs: no absence condition, one failure alerts.
        assert f"conditionAbsent:{FUNCTION}_runs_ok" not in found
        assert failed["thresholdValue"] == 0
        assert "a schedule that" in result.stdout


def test_a_channel_and_a_new_lag_threshold_update_the_policy_and_the_lag_metric(deployed):
    result = deployed.run("--yes", env={"NOTIFICATION_CHANNEL": CHANNEL, "ALERT_LAG_MINUTES": "75"})
    assert result.returncode == 0, result.output
    assert result.changes == [
        f"functions deploy {FUNCTION}",  # ALERT_LAG_MINUTES reaches the function too
        f"logging metrics update {FUNCTION}_lag_seconds",
        f"alpha monitoring policies update projects/{PROJECT}/alertPolicies/1001",
        # The lag chart names the threshold.
        f"monitoring dashboards update projects/{PROJECT}/dashboards/2001",
    ]
    policy = policy_of(result)
    assert policy["notificationChannels"] == [CHANNEL]
    lag = conditions(policy)[f"conditionThreshold:{FUNCTION}_lag_seconds"]["conditionThreshold"]
    assert lag["thresholdValue"] == 75 * 60
    lag_metric = config_of(result, f"logging metrics update {FUNCTION}_lag_seconds")
    assert 75 * 60 in lag_metric["bucketOptions"]["explicitBuckets"]["bounds"]
    assert "notifies " + CHANNEL in result.stdout
    assert "notifies no one yet" not in result.stdout
    # And then it is current.
    assert (
        deployed.run(env={"NOTIFICATION_CHANNEL": CHANNEL, "ALERT_LAG_MINUTES": "75"}).changes == []
    )


def test_without_a_channel_the_summary_says_how_to_attach_one(first_run):
    out = first_run.result.stdout
    assert "The alert policy notifies no one yet" in out
    assert "gcloud beta monitoring channels list --project=acme-secops" in out
    assert "NOTIFICATION_CHANNEL=projects/acme-secops/notificationChannels/ID" in out


def test_a_policy_changed_by_hand_is_put_back(deployed):
    state = deployed.state
    state["policies"][f"projects/{PROJECT}/alertPolicies/1001"]["labels"]["deploy_hash"] = "edited"
    deployed.seed(state)
    result = deployed.run("--yes")
    assert result.returncode == 0, result.output
    assert result.changes == [
        f"alpha monitoring policies update projects/{PROJECT}/alertPolicies/1001"
    ]


def test_without_gcloud_alpha_it_says_how_to_install_it(tmp_path):
    result = Sandbox(tmp_path).run("--yes", env={"FAKE_GCLOUD_NO_ALPHA": "1"})
    assert result.returncode == 2
    assert "gcloud components install alpha" in result.stderr
    assert result.changes == []
