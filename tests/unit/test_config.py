import pytest

from harness_audit.config import (
    BY_NAME,
    MAX_OBJECT_NAME_BYTES,
    MAX_PREFIX_BYTES,
    SETTINGS,
    load_config,
)
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
    assert config.state_key == BY_NAME["STATE_KEY"].default
    assert not config.state_key.startswith(config.prefix + "/")
    assert (config.page_size, config.start_minutes_back, config.max_run_seconds) == (100, 60, 480)
    assert (config.overlap_seconds, config.max_object_bytes) == (600, 8_000_000)
    assert config.output_format is OutputFormat.API
    assert config.modules == () and config.actions == () and config.static_filter is None
    assert (config.max_requests_per_minute, config.alert_lag_minutes) == (360, 180)
    assert config.trigger_topic is None
    assert config.warnings == ()


def test_a_setting_left_unset_is_its_default_in_the_table():
    config = config_with()
    for setting in SETTINGS:
        if setting.default is not None:
            assert getattr(config, setting.field) == setting.parse(setting, setting.default)


def test_a_command_reads_only_its_settings():
    # status reads the bucket and the checkpoint's name: no key, no account, and a PAGE_SIZE
    # it does not use cannot stop it.
    env = {"GCS_BUCKET": "harness-io-logs", "STATE_KEY": "/s/state.json", "PAGE_SIZE": "500"}
    config = load_config(env, ("GCS_BUCKET", "STATE_KEY"))
    assert (config.bucket, config.state_key, config.page_size) == (
        "harness-io-logs",
        "s/state.json",
        100,
    )
    assert (config.account_id, config.api_key) == ("", "")
    with pytest.raises(ConfigError, match="PAGE_SIZE=500"):
        load_config(env, ("GCS_BUCKET", "PAGE_SIZE"))
    with pytest.raises(ConfigError, match="HARNESS_API_KEY is not set"):
        load_config(env, ("GCS_BUCKET", "HARNESS_API_KEY"))
    assert load_config(env, ("GCS_BUCKET", "HARNESS_API_KEY"), ("HARNESS_API_KEY",)).api_key == ""


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
        ("GCS_BUCKET", "audit..logs", "not a valid bucket name"),
        ("HARNESS_ACCOUNT_ID", "https://app.harness.io/ng/account/x", "not a URL"),
        ("HARNESS_API_BASE", "http://app.harness.io", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "ftp://app.harness.io", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.harness.io/?x=1", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://user:pw@app.harness.io", "is not a usable Harness URL"),
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


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("MAX_REQUESTS_PER_MINUTE", "0", "max_requests_per_minute", 0),
        ("MAX_REQUESTS_PER_MINUTE", "1000", "max_requests_per_minute", 1000),
        ("MAX_REQUESTS_PER_MINUTE", " 120 ", "max_requests_per_minute", 120),
        ("ALERT_LAG_MINUTES", "1", "alert_lag_minutes", 1),
        ("ALERT_LAG_MINUTES", "525600", "alert_lag_minutes", 525_600),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/abc", "trigger_topic", None),
        ("TRIGGER_TOPIC", "projects/abcdef/topics/Abc-_.~+%9", "trigger_topic", None),
        (
            "TRIGGER_TOPIC",
            "projects/a23456789012345678901234567890/topics/t" + "x" * 254,
            "trigger_topic",
            None,
        ),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/Google-audit", "trigger_topic", None),
        ("GCS_PREFIX", "/audit/harness/", "prefix", "audit/harness"),
        ("GCS_PREFIX", "//", "prefix", ""),
        ("GCS_PREFIX", "é" * (MAX_PREFIX_BYTES // 2), "prefix", "é" * (MAX_PREFIX_BYTES // 2)),
        ("GCS_PREFIX", "audit/.hidden/x..y", "prefix", "audit/.hidden/x..y"),
        ("STATE_KEY", "/harness/state.json", "state_key", "harness/state.json"),
        ("STATE_KEY", "s" * MAX_OBJECT_NAME_BYTES, "state_key", "s" * MAX_OBJECT_NAME_BYTES),
        ("STATE_KEY", "state/ünïcode state.json", "state_key", "state/ünïcode state.json"),
        ("STATE_KEY", ".well-known/acme/state.json", "state_key", ".well-known/acme/state.json"),
        ("HARNESS_API_BASE", "https://app.harness.io:443/gateway", "api_base", None),
        ("HARNESS_API_BASE", "https://h.example:65535", "api_base", None),
        ("HARNESS_API_BASE", "http://127.0.0.2:1", "api_base", None),
        ("HARNESS_API_KEY", "pat.a!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "api_key", None),
        ("VERIFY_REPAIR", "false", "verify_repair", False),
        ("VERIFY_REPAIR", " FALSE ", "verify_repair", False),
        ("VERIFY_REPAIR", "true", "verify_repair", True),
        ("VERIFY_REPAIR", "", "verify_repair", True),
    ],
)
def test_accepted_values(name, value, attribute, expected):
    config = config_with(**{name: value})
    if attribute:
        # None: the value is kept as given (after stripping surrounding white space).
        assert getattr(config, attribute) == (value.strip() if expected is None else expected)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        # New settings: range and form.
        ("MAX_REQUESTS_PER_MINUTE", "-1", "from 0 to 1000"),
        ("MAX_REQUESTS_PER_MINUTE", "1001", "0 turns pacing off"),
        ("MAX_REQUESTS_PER_MINUTE", "1_000", "not a whole number"),
        ("MAX_REQUESTS_PER_MINUTE", "6.5", "not a whole number"),
        ("ALERT_LAG_MINUTES", "0", "from 1 to 525600 minutes"),
        ("ALERT_LAG_MINUTES", "525601", "from 1 to 525600 minutes"),
        ("ALERT_LAG_MINUTES", "three hours", "not a whole number"),
        ("TRIGGER_TOPIC", "harness-trigger", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj/subscriptions/abc", "is not a full topic name"),
        (
            "TRIGGER_TOPIC",
            "//pubsub.googleapis.com/projects/my-proj/topics/abc",
            "is not a full topic name",
        ),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/a/b", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/short/topics/abc", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/" + "a" * 31 + "/topics/abc", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/My-Proj/topics/abc", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/1project/topics/abc", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj-/topics/abc", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my_proj/topics/abc", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/ab", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/" + "t" * 256, "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/1abc", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/ab c", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/ab$c", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/google-audit", "is not a full topic name"),
        ("TRIGGER_TOPIC", "projects/my-proj/topics/topic-\u00e9", "is not a full topic name"),
        # GCS object naming rules for the prefix.
        ("GCS_PREFIX", "a" * (MAX_PREFIX_BYTES + 1), "keep it to 900 bytes"),
        ("GCS_PREFIX", "é" * (MAX_PREFIX_BYTES // 2 + 1), "902 bytes long"),
        ("GCS_PREFIX", "audit\nharness", "is not a usable object name"),
        ("GCS_PREFIX", "audit\rharness", "is not a usable object name"),
        ("GCS_PREFIX", "audit\x00harness", "is not a usable object name"),
        ("GCS_PREFIX", "audit\tharness", "is not a usable object name"),
        ("GCS_PREFIX", "audit\x7fharness", "is not a usable object name"),
        ("GCS_PREFIX", "audit\u200bharness", "is not a usable object name"),
        ("GCS_PREFIX", "audit\udcffharness", "is not a usable object name"),
        ("GCS_PREFIX", "audit/../harness", "is not a usable object name"),
        ("GCS_PREFIX", "./audit", "is not a usable object name"),
        ("GCS_PREFIX", "..", "is not a usable object name"),
        ("GCS_PREFIX", ".well-known/acme-challenge", "is not a usable object name"),
        ("GCS_PREFIX", "/.well-known/acme-challenge/x/", "is not a usable object name"),
        # ... and for the state key, which must also name an object.
        ("STATE_KEY", "/", "names a folder"),
        ("STATE_KEY", "///", "names a folder"),
        ("STATE_KEY", "harness/state/", "names a folder"),
        ("STATE_KEY", "..", "is not a usable object name"),
        ("STATE_KEY", ".", "is not a usable object name"),
        ("STATE_KEY", "harness/./state.json", "is not a usable object name"),
        ("STATE_KEY", "harness/../state.json", "is not a usable object name"),
        ("STATE_KEY", "s" * (MAX_OBJECT_NAME_BYTES + 1), "keep it to 1024 bytes"),
        ("STATE_KEY", "state\n.json", "is not a usable object name"),
        ("STATE_KEY", "state\x00.json", "is not a usable object name"),
        ("STATE_KEY", "state\udc80.json", "is not a usable object name"),
        ("STATE_KEY", ".well-known/acme-challenge/state.json", "is not a usable object name"),
        # HARNESS_API_BASE: ports, characters, query, fragment, userinfo.
        ("HARNESS_API_BASE", "https://app.harness.io:99999", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.harness.io:0", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.harness.io:http", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://[::1", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.har\tness.io", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.harness.io/ga teway", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.harness.io\n/x", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.harness.io\x00", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.harness.io?", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.harness.io/#", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://app.harness.io/#top", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://@app.harness.io", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://user@app.harness.io", "is not a usable Harness URL"),
        (
            "HARNESS_API_BASE",
            "https://app.harness.io\\@evil.example",
            "is not a usable Harness URL",
        ),
        ("HARNESS_API_BASE", "https://app_harness!.io", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://äpp.harness.io", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "https://", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "app.harness.io", "is not a usable Harness URL"),
        ("HARNESS_API_BASE", "http://10.0.0.1", "is not a usable Harness URL"),
        # Account id and filters: control characters.
        ("HARNESS_ACCOUNT_ID", "Xk3pQ9\x00rTSv", "never has"),
        ("HARNESS_ACCOUNT_ID", "Xk3pQ9\u200brTSv", "never has"),
        ("HARNESS_ACCOUNT_ID", "Xk3p Q9rTSv", "never has"),
        ("FILTER_MODULES", "CD,C\x00I", "'C\\x00I'"),
        ("FILTER_ACTIONS", "CREATE\u200b", "'CREATE\\u200b'"),
        ("FILTER_ACTIONS", "CREATE\nDELETE", "'CREATE\\nDELETE'"),
        ("STATIC_FILTER", "EXCLUDE_LOGIN_EVENTS\x00", "EXCLUDE_LOGIN_EVENTS\\x00"),
        ("PAGE_SIZE", "٣", "not a whole number"),
        ("PAGE_SIZE", "1" * 5000, "not a whole number"),  # int() refuses over 4,300 digits
        ("VERIFY_REPAIR", "no", "set it to true or false"),
    ],
)
def test_rejected_values_name_the_variable_the_problem_and_the_fix(name, value, expected):
    message = problems_of(**{name: value})
    assert name in message
    assert expected in message
    assert ": " in message.split(name, 1)[1], "every problem says how to fix it"


@pytest.mark.parametrize("name", ["GCS_PREFIX", "STATE_KEY", "HARNESS_API_BASE"])
def test_long_values_are_shown_cut(name):
    message = problems_of(**{name: "x\n" + "y" * 5000})
    assert len(message) < 1000
    assert "5002 characters" in message


def test_no_warning_about_names_that_are_already_wrong():
    with pytest.raises(ConfigError) as caught:
        config_with(GCS_PREFIX="/", STATE_KEY="..")
    assert len(caught.value.problems) == 1


# Not a real token; mixed-case so that no 4 characters of it occur in ordinary words.
SECRET_HEAD, SECRET_TAIL = "pat.Qz7Wk9Xv.Jm4R", "t8YpLn2HcB6g"


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("é", "inside it (at position 18)"),
        ("\u00a0", "inside it (at position 18)"),
        ("\u2019", "not printable ASCII"),
        ("中", "not printable ASCII"),
        ("\u200b", "not printable ASCII"),
        ("\x00", "not printable ASCII"),
        ("\x7f", "not printable ASCII"),
        ("\udcff", "not printable ASCII"),
        ("\t", "white space or characters that are not printable ASCII"),
        (" ", "white space or characters that are not printable ASCII"),
        ("\n", "white space or characters that are not printable ASCII"),
        ("éé\n\x01\x02\x03\x04\x05", "at position 18, 19, 20, 21, 22 and 3 more"),
    ],
)
def test_api_key_errors_never_quote_the_key(bad, expected):
    key = SECRET_HEAD + bad + SECRET_TAIL
    with pytest.raises(ConfigError) as caught:
        # With other problems too: none of their messages may carry the key either.
        config_with(HARNESS_API_KEY=key, PAGE_SIZE="0", GCS_PREFIX="..", TRIGGER_TOPIC="t")
    error = caught.value
    shown = " ".join([str(error), repr(error), *error.problems])
    assert expected in shown
    assert "HARNESS_API_KEY" in shown
    assert bad.strip() == "" or bad not in shown
    for size in range(4, len(key) + 1):
        for start in range(len(key) - size + 1):
            assert key[start : start + size] not in shown


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("api", OutputFormat.API),
        ("API", OutputFormat.API),
        ("  api  ", OutputFormat.API),
        ("streaming", OutputFormat.STREAMING),
        ("Streaming\n", OutputFormat.STREAMING),
        ("\tSTREAMING", OutputFormat.STREAMING),
    ],
)
def test_output_format_accepts_either_word_in_any_case(value: str, expected: OutputFormat):
    assert config_with(OUTPUT_FORMAT=value).output_format is expected


@pytest.mark.parametrize(
    "value", ["json", "stream", "rest", "api,streaming", "api streaming", "API_"]
)
def test_output_format_refuses_anything_else_naming_both_words(value: str):
    message = problems_of(OUTPUT_FORMAT=value)
    assert "api" in message and "streaming" in message
    assert repr(value) in message
