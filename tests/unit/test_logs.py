import json
import logging
import math
import string

import pytest

from harness_audit import logs
from harness_audit.logs import (
    MAX_FIELD_CHARS,
    MAX_LINE_BYTES,
    REDACTED,
    JsonFormatter,
    clean,
    configure_logging,
    log,
    register_secret,
    severity_name,
)

# Not real tokens. Mixed case, so that no 4 characters of one occur in ordinary text. The
# key is printable ASCII (config refuses anything else); '"' and '\\' are what JSON escapes.
KEYS = [
    'pat.Qz7W"k9Xv.Jm4R',
    "pat.Qz7W\\k9Xv.Jm4R",
    "pat.Qz7W/k9Xv.Jm4R",
    'pat.Q"z/7+W%k&9\\X.Jm4R',
    "sat.Qz7Wk9Xv.Jm4R",
    "pat." + string.punctuation + "Zq9",
]


@pytest.fixture(autouse=True)
def secrets(monkeypatch):
    """A fresh registry of secrets for each test."""
    monkeypatch.setattr(logs, "_secrets", set())


@pytest.fixture
def lines(capsys):
    """Log through the real handler; return the JSON lines written to stdout."""
    configure_logging()
    capsys.readouterr()

    def written() -> tuple[list[dict], list[str]]:
        out = capsys.readouterr().out
        raw = out.splitlines()
        assert out.endswith("\n") and all(line.startswith("{") for line in raw)
        for line in raw:
            assert len(line.encode("utf-8")) + 1 <= MAX_LINE_BYTES
        return [json.loads(line) for line in raw], raw

    return written


def fit_line(entry: dict) -> str:
    """``entry`` (severity, message, fields) as the handler's formatter writes it."""
    fields = dict(entry)
    level, message = getattr(logging, fields.pop("severity")), fields.pop("message")
    record = {"name": logs.LOGGER_NAME, "levelno": level, "msg": message, "fields": fields}
    return JsonFormatter().format(logging.makeLogRecord(record))


def key_pieces(key: str, size: int = 4):
    """Every run of ``size`` characters of ``key``, as it stands and JSON-escaped."""
    escaped = json.dumps(key)[1:-1]
    return {text[i : i + size] for text in (key, escaped) for i in range(len(text) - size + 1)}


@pytest.mark.parametrize("key", KEYS)
def test_the_key_as_it_stands_and_json_escaped_is_redacted(key):
    register_secret(key)
    for form in (key, json.dumps(key)[1:-1]):
        text = f"before {form} after, and again:{form}"
        assert clean(text) == f"before {REDACTED} after, and again:{REDACTED}"


@pytest.mark.parametrize("key", KEYS)
def test_secret_in_any_field_never_reaches_the_written_line(key, lines):
    register_secret(key)
    body = json.dumps({"message": f"bad token {key}", "echo": [key]})
    log(
        logging.ERROR,
        f"rejected: {key}",
        body=body,
        nested={"list": [key, {key: 1}], "tuple": (key,)},
        error=ValueError(key),
    )
    [entry], [raw] = lines()
    assert entry["message"] == f"rejected: {REDACTED}"
    assert entry["nested"] == {"list": [REDACTED, {REDACTED: 1}], "tuple": [REDACTED]}
    assert entry["error"] == REDACTED
    assert json.loads(entry["body"]) == {"message": f"bad token {REDACTED}", "echo": [REDACTED]}
    for piece in key_pieces(key):
        assert piece not in raw


def test_exception_text_is_redacted(lines):
    register_secret(KEYS[0])
    try:
        raise RuntimeError(f"header x-api-key: {KEYS[0]}")
    except RuntimeError:
        logging.getLogger(logs.LOGGER_NAME).exception("request failed")
    [entry], [raw] = lines()
    assert entry["severity"] == "ERROR"
    assert f"x-api-key: {REDACTED}" in entry["exception"]
    for piece in key_pieces(KEYS[0]):
        assert piece not in raw


def test_without_registered_secrets_text_is_unchanged(lines):
    log(logging.INFO, "plain", value="pat.Qz7W")
    [entry], _ = lines()
    assert entry == {"severity": "INFO", "message": "plain", "value": "pat.Qz7W"}


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
        (25, "INFO"),
        (35, "WARNING"),
        (60, "CRITICAL"),
        (5, "DEFAULT"),
        (0, "DEFAULT"),
    ],
)
def test_severity_names(level, expected):
    assert severity_name(level) == expected


def test_line_shape_and_reserved_names(lines):
    log(logging.WARNING, "hello", severity="x", message="y", count=3, ratio=math.nan)
    [entry], [raw] = lines()
    assert raw.startswith('{"severity": "WARNING", "message": "hello"')
    assert entry == {
        "severity": "WARNING",
        "message": "hello",
        "severity_field": "x",
        "message_field": "y",
        "count": 3,
        "ratio": "nan",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("é", "é"),
        ("bad\udcffbytes", "bad\udcffbytes"),
        (math.inf, "inf"),
        (1.5, 1.5),
        (True, True),
        (None, None),
        ((1, "a"), [1, "a"]),
        ({1: b"x"}, {"1": "b'x'"}),
        (frozenset({"only"}), ["only"]),
    ],
)
def test_clean_makes_values_json_ready(value, expected):
    assert clean(value) == expected


def test_lone_surrogates_do_not_break_the_write(lines):
    log(logging.INFO, "bytes that were not UTF-8: \udcff")
    [entry], _ = lines()
    assert entry["message"] == "bytes that were not UTF-8: \udcff"


@pytest.mark.parametrize("size", [MAX_FIELD_CHARS, MAX_FIELD_CHARS + 1, 5_000_000])
def test_each_string_is_cut_at_a_fixed_length(size):
    entry = json.loads(fit_line({"severity": "ERROR", "message": "m" * size, "url": "u" * 500}))
    assert entry["url"] == "u" * 500
    if size <= MAX_FIELD_CHARS:
        assert entry["message"] == "m" * size and "truncated" not in entry
    else:
        assert entry["truncated"] is True
        assert entry["message"] == (
            "m" * MAX_FIELD_CHARS + f"… [truncated {size - MAX_FIELD_CHARS} chars]"
        )


def test_nested_strings_are_cut_too():
    page = {"e": ["x" * 10**5]}
    entry = json.loads(fit_line({"severity": "ERROR", "message": "m", "page": page}))
    assert entry["page"]["e"][0].startswith("x" * MAX_FIELD_CHARS + "… [truncated")
    assert entry["message"] == "m"


@pytest.mark.parametrize("char", ["é", "中", '"', "\x01", "😀"])
def test_the_widest_message_still_fits_the_line(char):
    line = fit_line({"severity": "ERROR", "message": char * 10**6, "n": 1})
    assert len(line.encode("utf-8")) < MAX_LINE_BYTES
    assert json.loads(line)["message"].startswith(char * MAX_FIELD_CHARS)


def test_a_line_over_the_limit_keeps_severity_and_the_message():
    fields = {f"field_{i:05d}": "v" * 100 for i in range(3000)}
    entry = json.loads(fit_line({"severity": "WARNING", "message": "many fields", **fields}))
    assert entry == {
        "severity": "WARNING",
        "message": "many fields",
        "truncated": True,
        "dropped_fields": 3000,
    }


def test_redaction_happens_before_the_cut(lines):
    key = KEYS[3]
    register_secret(key)
    # Place the key across every point near the cut: no beginning of it may survive.
    for offset in range(MAX_FIELD_CHARS - len(key) - 2, MAX_FIELD_CHARS + 2):
        log(logging.ERROR, "m" * offset + key + "z" * 100)
        [entry], [raw] = lines()
        assert entry["truncated"] is True
        for size in range(4, len(key) + 1):
            assert key[:size] not in raw
            assert json.dumps(key)[1 : size + 1] not in raw
