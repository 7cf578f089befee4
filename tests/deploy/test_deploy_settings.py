"""deploy.sh and the function accept and refuse the same values, with the same messages.

For every setting the two share, each value of the table goes through the function's
``load_config`` and through deploy.sh (with no gcloud on PATH, so that a run whose input is
accepted stops right after the check, before touching any project). deploy.sh must refuse
exactly what the function refuses, with the same words, and accept the rest.
"""

import pytest
from deploy_sandbox import Sandbox

from harness_audit.config import load_config
from harness_audit.errors import ConfigError

NO_GCLOUD = "gcloud is not on PATH"

TABLE = [
    # The values issue 16 found deploy.sh accepting and the function refusing, all at once.
    {
        "PAGE_SIZE": "500",
        "MAX_RUN_SECONDS": "5",
        "HARNESS_API_BASE": "http://harness.example.com",
        "STATIC_FILTER": "bogus",
        "MAX_OBJECT_MB": "50",
    },
    {"PAGE_SIZE": "1"},
    {"PAGE_SIZE": "0"},
    {"PAGE_SIZE": "lots"},
    {"MAX_RUN_SECONDS": "539"},
    {"MAX_RUN_SECONDS": "540"},
    {"MAX_RUN_SECONDS": "8m"},
    {"HARNESS_API_BASE": "https://app.harness.io/gateway"},
    {"HARNESS_API_BASE": "https://app.harness.io/?x=1"},
    {"STATIC_FILTER": "exclude_login_events"},
    {"MAX_OBJECT_MB": "0.5"},
    {"MAX_OBJECT_MB": "lots"},
    {"ALERT_LAG_MINUTES": "20000"},
    {"ALERT_LAG_MINUTES": "525600"},
    {"ALERT_LAG_MINUTES": "0"},
    {"ALERT_LAG_MINUTES": "525601"},
    {"ALERT_LAG_MINUTES": "3h"},
    {"MAX_REQUESTS_PER_MINUTE": "0"},
    {"MAX_REQUESTS_PER_MINUTE": "1001"},
    {"MAX_REQUESTS_PER_MINUTE": "-1"},
    {"GCS_BUCKET": "acme.harness-audit.example"},
    {"GCS_BUCKET": "a" * 63 + "." + "b" * 63},
    {"GCS_BUCKET": "a" * 64},
    {"GCS_BUCKET": "Harness_Logs"},
    {"GCS_BUCKET": "-audit-logs"},
    {"GCS_BUCKET": "google-audit"},
    {"GCS_BUCKET": "acme-g00gle-audit"},
    {"GCS_BUCKET": "goog-audit"},
    {"GCS_BUCKET": "192.168.5.4"},
    {"GCS_BUCKET": "gs://acme-audit"},
    {"GCS_BUCKET": None},
    {"HARNESS_ACCOUNT_ID": "https://app.harness.io/ng/account/x"},
    {"HARNESS_ACCOUNT_ID": None},
    {"HARNESS_API_KEY": "pat.abc def"},
    {"HARNESS_API_KEY": "pat.abc\u2019def"},
    {"GCS_PREFIX": "/audit/harness/"},
    {"GCS_PREFIX": "audit/../harness"},
    {"STATE_KEY": "harness/state/"},
    {"STATE_KEY": "harness/audit/state.json"},
    {"START_MINUTES_BACK": "0"},
    {"FILTER_MODULES": "cd,CI"},
    {"FILTER_MODULES": "CD\nCI"},
    {"FILTER_ACTIONS": "CREATE,up date"},
    {"MAX_RETRIES": "99"},
    {"OVERLAP_SECONDS": "-1"},
    {"OUTPUT_FORMAT": " Streaming "},
    {"OUTPUT_FORMAT": "xml"},
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return Sandbox(tmp_path_factory.mktemp("settings"))


@pytest.mark.parametrize("overrides", TABLE, ids=lambda overrides: repr(overrides)[:60])
def test_deploy_and_the_function_refuse_the_same_values_with_the_same_message(sandbox, overrides):
    env = sandbox.env(overrides, path=sandbox.path_without_gcloud)
    try:
        load_config(env)
        refused_by_function = []
    except ConfigError as error:
        refused_by_function = error.problems

    result = sandbox.run("--yes", env=overrides, path=sandbox.path_without_gcloud)
    errors = [
        line.removeprefix("deploy.sh: error: ")
        for line in result.stderr.splitlines()
        if line.startswith("deploy.sh: error: ")
    ]
    if refused_by_function:
        assert result.returncode == 2
        assert errors == refused_by_function
        assert "nothing was changed" in result.stderr
    else:
        # Accepted: the run went on to look for gcloud, and stopped there.
        assert len(errors) == 1 and errors[0].startswith(NO_GCLOUD), result.stderr
