import pytest

from harness_audit.config import DEFAULT_STATE_KEY, load_config
from harness_audit.errors import ConfigError
from harness_audit.layout import OutputFormat

KEY = "pat.acct.tokenid.s3cr3tvalue"
BASE = {
    "HARNESS_ACCOUNT_ID": "Xk3pQ9rTSvWm2LbA7cYd1Q",
    "HARNESS_API_KEY": KEY,
    "GCS_BUCKET": "harness-io-logs",
}


def config_with(**overrides):
    env = dict(BASE)
    env.update(overrides)
    return load_config({k: v for k, v in env.items() if v is not None})


def problems_of(**overrides) -> str:
    with pytest.raises(ConfigError) as caught:
        config_with(**overrides)
    return str(caught.value)


def test_defaults():
    config = config_with()
    assert config.api_base == "https://app.harness.io"
    assert config.prefix == "harness/audit"
    assert config.state_key == DEFAULT_STATE_KEY
    assert not config.state_key.startswith(config.prefix + "/")
    assert (config.page_size, config.start_minutes_back, config.max_run_seconds) == (100, 60, 480)
    assert (config.overlap_seconds, config.max_object_bytes) == (600, 8_000_000)
    assert config.output_format is OutputFormat.API
    assert config.modules == () and config.actions == () and config.static_filter is None
    assert config.warnings == ()


def test_api_key_is_hidden_from_repr_and_stripped():
    config = config_with(HARNESS_API_KEY=f"  {KEY}\n")
    assert config.api_key == KEY
    assert KEY not in repr(config)


@pytest.mark.parametrize("name", ["HARNESS_ACCOUNT_ID", "HARNESS_API_KEY", "GCS_BUCKET"])
def test_required_variables_are_named(name):
    message = problems_of(**{name: None})
    assert f"{name} is not set" in message


def test_all_problems_reported_at_once_and_key_never_echoed():
    message = problems_of(
        PAGE_SIZE="500", STATIC_FILTER="nope", GCS_BUCKET="gs://b/x", HARNESS_API_KEY="pat.a b"
    )
    for expected in ("PAGE_SIZE=500", "STATIC_FILTER", "without gs://", "white space"):
        assert expected in message
    assert "pat.a b" not in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PAGE_SIZE", "0", "from 1 to 100"),
        ("PAGE_SIZE", "abc", "not a whole number"),
        ("MAX_RUN_SECONDS", "540", "below the function timeout"),
        ("MAX_RUN_SECONDS", "5", "from 10 to 539"),
        ("OVERLAP_SECONDS", "-1", "from 0 to 86400"),
        ("START_MINUTES_BACK", "0", "from 1"),
        ("MAX_RETRIES", "99", "from 0 to 20"),
        ("MAX_OBJECT_MB", "9", "from 0.001 to 8"),
        ("MAX_OBJECT_MB", "lots", "from 0.001 to 8"),
        ("GCS_BUCKET", "Bad_Bucket", "not a valid bucket name"),
        ("GCS_BUCKET", "ab", "not a valid bucket name"),
        ("HARNESS_ACCOUNT_ID", "https://app.harness.io/ng/account/x", "not a URL"),
        ("HARNESS_API_BASE", "http://app.harness.io", "unencrypted"),
        ("HARNESS_API_BASE", "ftp://app.harness.io", "not an http(s) URL"),
        ("HARNESS_API_BASE", "https://app.harness.io/?x=1", "must not carry"),
        ("HARNESS_API_BASE", "https://user:pw@app.harness.io", "must not carry"),
        ("FILTER_MODULES", "cd,CI", "'cd'"),
        ("FILTER_ACTIONS", "CREATE,up date", "'up date'"),
        ("STATIC_FILTER", "EXCLUDE_EVERYTHING", "EXCLUDE_LOGIN_EVENTS, EXCLUDE_SYSTEM_EVENTS"),
        ("OUTPUT_FORMAT", "xml", "OUTPUT_FORMAT"),
        ("STATE_KEY", "harness/state/", "names a folder"),
    ],
)
def test_invalid_values_name_the_variable_and_the_fix(name, value, expected):
    message = problems_of(**{name: value})
    assert name in message
    assert expected in message


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1:8080",
        "http://localhost:9",
        "http://[::1]:80",
        "https://h.example/gateway/",
    ],
)
def test_accepted_api_bases(base):
    assert config_with(HARNESS_API_BASE=base).api_base == base.rstrip("/")


def test_filters_and_formats_parse():
    config = config_with(
        FILTER_MODULES=" CD, CI ,,CORE ",
        FILTER_ACTIONS="CREATE",
        STATIC_FILTER="exclude_login_events",
        OUTPUT_FORMAT=" Streaming ",
        MAX_OBJECT_MB="0.5",
        GCS_PREFIX="/audit/harness/",
    )
    assert config.modules == ("CD", "CI", "CORE")
    assert config.actions == ("CREATE",)
    assert config.static_filter == "EXCLUDE_LOGIN_EVENTS"
    assert config.output_format is OutputFormat.STREAMING
    assert config.max_object_bytes == 500_000
    assert config.prefix == "audit/harness"


@pytest.mark.parametrize(
    ("prefix", "state_key", "warns"),
    [
        ("harness/audit", "harness/audit/state.json", True),  # the guide's default
        ("harness/audit", "harness/audit-state.json", False),
        ("", "state.json", True),
        ("logs", "state/audit.json", False),
    ],
)
def test_state_key_under_prefix_warns(prefix, state_key, warns):
    config = config_with(GCS_PREFIX=prefix or None, STATE_KEY=state_key)
    if prefix == "":
        config = load_config({**BASE, "GCS_PREFIX": "/", "STATE_KEY": state_key})
    assert bool(config.warnings) is warns
    if warns:
        assert "STATE_KEY" in config.warnings[0] and "outside the prefix" in config.warnings[0]
