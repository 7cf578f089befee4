"""The feed's settings and update mask: pure, from tables of cases."""

import pytest
from google.cloud.chronicle_v1 import types

from harness_audit.config import load_config
from harness_audit.errors import ConfigError
from harness_audit.feed import differing, feed_settings

BASE = {
    "HARNESS_ACCOUNT_ID": "acct",
    "HARNESS_API_KEY": "pat.key",
    "GCS_BUCKET": "audit-bucket",
    "PROJECT_ID": "collector-project",
    "SECOPS_INSTANCE": "0F0E0D0C-0B0A-4908-8706-050403020100",
    "SECOPS_REGION": "europe-west2",
}


def settings(**env):
    environ = {key: value for key, value in {**BASE, **env}.items() if value is not None}
    return feed_settings(environ, load_config(environ))


def test_without_secops_instance_the_feed_is_managed_by_hand():
    assert settings(SECOPS_INSTANCE=None) is None
    assert settings(SECOPS_INSTANCE="  ") is None


def test_the_regional_endpoint_the_parent_and_the_wanted_feed():
    found = settings(SECOPS_LABELS="team=sec, env=prod", SECOPS_ASSET_NAMESPACE="harness")
    parent = "projects/collector-project/locations/europe-west2/instances/"
    assert found.parent == parent + "0f0e0d0c-0b0a-4908-8706-050403020100"
    assert found.endpoint == "https://europe-west2-chronicle.googleapis.com"
    assert found.display_name == "harness-audit-collector"
    assert found.details["gcs_v2_settings"] == {
        "bucket_uri": "gs://audit-bucket/harness/audit/",
        "source_deletion_option": "NEVER",
        "max_lookback_days": 180,
    }
    assert found.details["labels"] == {"team": "sec", "env": "prod"}
    assert found.details["asset_namespace"] == "harness"
    assert found.details["log_type"] == f"{found.parent}/logTypes/HARNESS_IO"
    other = settings(SECOPS_PROJECT="secops-project", GCS_PREFIX="/", FUNCTION_NAME="hac-2")
    assert other.parent.startswith("projects/secops-project/") and other.display_name == "hac-2"
    assert other.details["gcs_v2_settings"]["bucket_uri"] == "gs://audit-bucket/"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECOPS_INSTANCE", "not-a-uuid"),
        ("SECOPS_REGION", ""),
        ("SECOPS_REGION", "us/evil"),
        ("SECOPS_PROJECT", "X"),
        ("SECOPS_MAX_LOOKBACK_DAYS", "0"),
        ("SECOPS_MAX_LOOKBACK_DAYS", "181"),
        ("SECOPS_LABELS", "team"),
    ],
)
def test_each_bad_setting_is_named(name, value):
    with pytest.raises(ConfigError) as raised:
        settings(**{name: value})
    assert name in str(raised.value)


def test_the_update_mask_names_only_what_differs_and_never_the_display_name():
    wanted = types.Feed(display_name="a", details=settings().details)
    same = types.Feed(wanted)
    assert differing(same, wanted) == []
    moved = types.Feed(wanted)
    moved.display_name = "renamed by hand"
    moved.details.gcs_v2_settings.bucket_uri = "gs://audit-bucket/old/"
    moved.details.labels["extra"] = "1"
    assert differing(moved, wanted) == [
        "details.labels",
        "details.gcs_v2_settings.bucket_uri",
    ]
