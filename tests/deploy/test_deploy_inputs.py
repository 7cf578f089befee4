"""deploy.sh refuses bad input early: before any gcloud call, exit 2, a message naming the
variable and the fix, and every problem at once. The function's own settings are checked by
the function's code: test_deploy_settings.py holds both to the same table."""

import shutil
import subprocess

import pytest
from deploy_sandbox import Sandbox


@pytest.fixture
def sandbox(tmp_path):
    return Sandbox(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"PROJECT_ID": None}, "PROJECT_ID is not set: export PROJECT_ID="),
        ({"PROJECT_ID": "My Project"}, "PROJECT_ID='My Project' is not a project id"),
        # The function's own settings: one example here, the rest in test_deploy_settings.py.
        ({"GCS_BUCKET": None}, "GCS_BUCKET is not set: set it to the name of the bucket"),
        ({"HARNESS_ACCOUNT_ID": None}, "HARNESS_ACCOUNT_ID is not set: set it to your Harness"),
        ({"SCHEDULE": "0 * * *"}, "SCHEDULE='0 * * *' is not a cron expression: give 5"),
        ({"SCHEDULE": "0 * * * * *"}, "SCHEDULE='0 * * * * *' is not a cron expression"),
        ({"SCHEDULE": "every hour"}, "SCHEDULE='every hour' is not a cron expression"),
        ({"SCHEDULE": "@hourly"}, "SCHEDULE='@hourly' is not a cron expression"),
        ({"SCHEDULE": "60 * * * *"}, "SCHEDULE='60 * * * *' is not a cron expression"),
        ({"SCHEDULE": "0 24 * * *"}, "SCHEDULE='0 24 * * *' is not a cron expression"),
        ({"SCHEDULE": "*/0 * * * *"}, "SCHEDULE='*/0 * * * *' is not a cron expression"),
        ({"SCHEDULE": "0 0 * * FUN"}, "SCHEDULE='0 0 * * FUN' is not a cron expression"),
        ({"REGION": "US Central"}, "REGION='US Central' is not a region name"),
        ({"FUNCTION_NAME": "Harness_Collector"}, "FUNCTION_NAME='Harness_Collector' is not"),
        ({"FUNCTION_NAME": "h" * 50}, "is not usable: 3-49 lowercase letters"),
        ({"SECOPS_SERVICE_ACCOUNT": "chronicle"}, "SECOPS_SERVICE_ACCOUNT='chronicle' is not"),
        ({"RETRY_ON_FAILURE": "yes"}, "RETRY_ON_FAILURE='yes' must be true or false"),
        ({"NOTIFICATION_CHANNEL": "1234567"}, "NOTIFICATION_CHANNEL='1234567' is not a notif"),
        (
            {"NOTIFICATION_CHANNEL": "projects/acme-secops/notificationChannels/abc"},
            "is not a notification channel's full name: projects/PROJECT/notificationChannels/ID",
        ),
    ],
)
def test_bad_input_stops_before_any_gcloud_call(sandbox, overrides, message):
    result = sandbox.run("--yes", env=overrides)
    assert result.returncode == 2
    assert message in result.stderr
    assert "nothing was changed" in result.stderr
    assert result.calls == []


def test_every_problem_is_reported_at_once(sandbox):
    result = sandbox.run("--yes", env={"PROJECT_ID": None, "GCS_BUCKET": "Bad", "SCHEDULE": "x"})
    assert result.returncode == 2
    for name in ("PROJECT_ID", "GCS_BUCKET", "SCHEDULE"):
        assert f"error: {name}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frobnicate"], "unknown option '--frobnicate'"),
        (["deploy"], "unexpected argument 'deploy'"),
        (["--project"], "option --project needs a value"),
        (["--api-key=sekrit"], "the API key is not taken as an option"),
    ],
)
def test_bad_arguments_are_refused(sandbox, args, message):
    result = sandbox.run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.calls == []


def test_help_describes_the_variables(sandbox):
    result = sandbox.run("--help")
    assert result.returncode == 0
    for name in ("PROJECT_ID", "GCS_BUCKET", "HARNESS_ACCOUNT_ID", "HARNESS_API_KEY", "--dry-run"):
        assert name in result.stdout
    assert result.calls == []


def test_missing_gcloud_is_named_with_the_fix(sandbox):
    result = sandbox.run("--yes", path=sandbox.path_without_gcloud)
    assert result.returncode == 2
    assert "gcloud is not on PATH: install the Google Cloud CLI" in result.stderr


def test_not_logged_in_is_named_with_the_fix(sandbox):
    result = sandbox.run("--yes", env={"FAKE_GCLOUD_ACCOUNT": ""})
    assert result.returncode == 2
    assert "gcloud is not logged in: run 'gcloud auth login'" in result.stderr
    assert [call.summary for call in result.calls] == ["auth list"]


def test_a_project_that_cannot_be_seen_is_named(sandbox):
    result = sandbox.run("--yes", env={"FAKE_GCLOUD_NO_PROJECT": "1"})
    assert result.returncode == 2
    assert "project 'acme-secops' was not found" in result.stderr
    assert result.changes == []


# Valid input gets past validation; with no gcloud on PATH the run then stops at that check,
# which shows the input was accepted without touching any project.


@pytest.mark.parametrize(
    "overrides",
    [
        {"NOTIFICATION_CHANNEL": "projects/acme-secops/notificationChannels/1234567890"},
        {"NOTIFICATION_CHANNEL": "projects/123456789012/notificationChannels/42"},
    ],
)
def test_notification_channels_are_accepted(sandbox, overrides):
    result = sandbox.run("--yes", env=overrides, path=sandbox.path_without_gcloud)
    assert result.stderr.count("error:") == 1
    assert "gcloud is not on PATH" in result.stderr


@pytest.mark.parametrize(
    "schedule",
    [
        "0 * * * *",
        "*/15 * * * *",
        "0 */6 * * *",
        "30 2 1,15 * *",
        "0 9 * JAN-MAR mon-fri",
        "5-55/10 8-18 * * 1-5",
        "0 0 * * 7",
    ],
)
def test_cron_expressions_are_accepted(sandbox, schedule):
    result = sandbox.run("--yes", env={"SCHEDULE": schedule}, path=sandbox.path_without_gcloud)
    assert "SCHEDULE" not in result.stderr
    assert "gcloud is not on PATH" in result.stderr


def test_options_mirror_the_variables(sandbox):
    result = sandbox.run(
        "--project=acme-secops",
        "--bucket",
        "acme-harness-audit",
        "--account-id=AcmeAcct_01",
        "--schedule=*/30 * * * *",
        env={"PROJECT_ID": None, "GCS_BUCKET": None, "HARNESS_ACCOUNT_ID": None},
        path=sandbox.path_without_gcloud,
    )
    assert "error: gcloud is not on PATH" in result.stderr
    assert result.stderr.count("error:") == 1


def test_a_checkpoint_under_the_feed_prefix_is_warned_about(sandbox):
    result = sandbox.run(
        "--yes", env={"STATE_KEY": "harness/audit/state.json"}, path=sandbox.path_without_gcloud
    )
    assert (
        "warning: STATE_KEY='harness/audit/state.json' lies under GCS_PREFIX='harness/audit'"
        in result.stderr
    )


def test_destroy_does_not_need_the_harness_account(sandbox):
    result = sandbox.run(
        "--destroy", env={"HARNESS_ACCOUNT_ID": None}, path=sandbox.path_without_gcloud
    )
    assert "HARNESS_ACCOUNT_ID" not in result.stderr
    assert "gcloud is not on PATH" in result.stderr


def test_names_derive_from_the_function_and_the_account_id_fits_30_characters(sandbox):
    # --destroy --dry-run on an empty project: only describes, which show every derived name.
    result = sandbox.run(
        "--destroy", "--dry-run", env={"FUNCTION_NAME": "harness-audit-collector-eu-west"}
    )
    assert result.returncode == 0, result.output
    assert result.changes == []
    described = {call.summary for call in result.calls}
    account_id = "harness-audit-collector-eu-sa"  # 27 characters of the name, less the dash
    assert len(account_id) <= 30
    assert f"iam service-accounts describe {account_id}@acme-secops.iam.gserviceaccount.com" in (
        described
    )
    for name in (
        "scheduler jobs describe harness-audit-collector-eu-west-schedule",
        "functions describe harness-audit-collector-eu-west",
        "pubsub topics describe projects/acme-secops/topics/harness-audit-collector-eu-west-"
        "trigger",
        "secrets describe projects/acme-secops/secrets/harness-audit-collector-eu-west-api-key",
        "logging metrics describe harness-audit-collector-eu-west_runs_ok",
    ):
        assert name in described
    assert "Nothing to remove" in result.stdout


def test_sh_deploy_sh_goes_on_under_bash(sandbox):
    # `sh deploy.sh` used to stop at "Illegal option -o pipefail".
    sh = sandbox.tools / "sh"
    sh.symlink_to(shutil.which("dash") or shutil.which("sh"))
    completed = subprocess.run(
        ["sh", str(sandbox.script), "--help"],
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Usage: ./deploy.sh" in completed.stdout
