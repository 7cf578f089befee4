import json
import logging
import math
import re
from urllib.parse import quote, quote_plus

import pytest

from harness_audit import logs
from harness_audit.logs import (
    MAX_LINE_BYTES,
    REDACTED,
    Redactor,
    clean,
    configure_logging,
    fit_line,
    log,
    register_secret,
    secret_forms,
    severity_name,
)

# Not real tokens. Mixed case, so that no 4 characters of one occur in ordinary text.
KEYS = [
    'pat.Qz7W"k9Xv.Jm4R',
    "pat.Qz7W\\k9Xv.Jm4R",
    "pat.Qz7W/k9Xv.Jm4R",
    "pat.Qz7W+k9Xv.Jm4R",
    "pat.Qz7W%k9Xv.Jm4R",
    "pat.Qz7W&k9Xv.Jm4R",
    'pat.Q"z/7+W%k&9\\X.Jm4R',
    "sat.Qz7Wk9Xv.Jm4R",
]


@pytest.fixture
def redactor(monkeypatch):
    """A fresh registry of secrets, used by register_secret and the formatter."""
    fresh = Redactor()
    monkeypatch.setattr(logs, "_REDACTOR", fresh)
    return fresh


@pytest.fixture
def lines(capsys, redactor):
    """Log through the real handler; return the JSON lines written to stdout."""
    configure_logging()

    def written() -> list[dict]:
        out = capsys.readouterr().out
        raw = out.splitlines()
        assert out.endswith("\n") and all(line.startswith("{") for line in raw)
        for line in raw:
            assert len(line.encode("utf-8")) + 1 <= MAX_LINE_BYTES
        return [json.loads(line) for line in raw], raw

    capsys.readouterr()
    return written


def key_pieces(key: str, size: int = 4):
    """Every run of ``size`` characters of ``key``: none may be left in a line."""
    return {key[i : i + size] for i in range(len(key) - size + 1)}


@pytest.mark.parametrize(
    ("form_of", "label"),
    [
        (lambda key: key, "as stored"),
        (lambda key: json.dumps(key)[1:-1], "JSON-escaped"),
        (lambda key: json.dumps(key, ensure_ascii=False)[1:-1], "JSON-escaped, not ascii"),
        (lambda key: json.dumps(json.dumps(key)[1:-1])[1:-1], "JSON-escaped twice"),
        (lambda key: json.dumps(key)[1:-1].replace("/", "\\/"), "JSON with escaped /"),
        (lambda key: repr(key)[1:-1], "Python repr"),
        (lambda key: quote(key), "quote"),
        (lambda key: quote(key, safe=""), "quote, nothing safe"),
        (lambda key: re.sub("%..", lambda m: m[0].lower(), quote(key)), "lower-case hex"),
        (lambda key: quote_plus(key), "quote_plus"),
        (lambda key: quote_plus(key, safe="/"), "quote_plus, / safe"),
        (lambda key: json.dumps(quote(key))[1:-1], "quote inside JSON"),
    ],
)
@pytest.mark.parametrize("key", KEYS)
def test_every_form_of_a_secret_is_redacted(key, form_of, label):
    redactor = Redactor()
    redactor.add(key)
    form = form_of(key)
    text = f"before {form} after, and again:{form}"
    assert redactor.redact(text) == f"before {REDACTED} after, and again:{REDACTED}", label


@pytest.mark.parametrize("key", KEYS)
def test_secret_in_any_field_is_redacted_in_the_written_line(key, lines):
    register_secret(key)
    body = json.dumps({"message": f"bad token {key}", "url": f"/x?token={quote_plus(key)}"})
    log(
        logging.ERROR,
        f"rejected: {key}",
        body=body,
        url=f"https://h/x?k={quote(key, safe='')}",
        nested={"list": [key, {key: 1}], "tuple": (repr(key),)},
        error=ValueError(key),
    )
    [entry], [raw] = lines()
    assert entry["message"] == f"rejected: {REDACTED}"
    assert entry["nested"] == {"list": [REDACTED, {REDACTED: 1}], "tuple": [f"'{REDACTED}'"]}
    assert entry["error"] == REDACTED
    assert json.loads(entry["body"]) == {
        "message": f"bad token {REDACTED}",
        "url": f"/x?token={REDACTED}",
    }
    for piece in key_pieces(key):
        assert piece not in raw


def test_secret_forms_are_computed_once_and_longest_first():
    forms = secret_forms('a"b/c')
    assert forms == tuple(sorted(forms, key=lambda form: (-len(form), form)))
    assert {'a"b/c', 'a\\"b/c', "a%22b/c", "a%22b%2Fc", 'a\\"b\\/c'} <= set(forms)
    assert secret_forms("") == ()


def test_exception_text_is_redacted(lines):
    register_secret(KEYS[0])
    try:
        raise RuntimeError(f"header x-api-key: {KEYS[0]}")
    except RuntimeError:
        logging.getLogger(logs.LOGGER_NAME).exception("request failed")
    [entry], [raw] = lines()
    assert entry["severity"] == "ERROR"
    assert f"x-api-key: {REDACTED}" in entry["exception"]
    assert KEYS[0] not in raw


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
    assert "truncated" not in entry


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("é", "é"),
        ("bad\udcffbytes", "bad\\udcffbytes"),
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
    assert clean(value, redact=lambda text: text) == expected


def sized(entry: dict) -> tuple[dict, str]:
    line = fit_line(clean(entry, redact=lambda text: text))
    assert len(line.encode("utf-8")) <= MAX_LINE_BYTES - 1
    return json.loads(line), line


def truncated_bytes(text: str) -> int:
    assert text.endswith(" bytes]") and "… [truncated " in text
    return int(text.rsplit("… [truncated ", 1)[1].split()[0])


@pytest.mark.parametrize(
    ("message_bytes", "other_fields", "cut_fields"),
    [
        # A 5 MB Harness error as the message: only the message is cut.
        (5_000_000, {"status": "x" * 100, "url": "u" * 500}, {"message"}),
        # Just over the limit.
        (MAX_LINE_BYTES, {}, {"message"}),
        # The message is small; the largest field is the culprit and the only one cut.
        (100, {"body": "b" * 300_000, "url": "u" * 500}, {"body"}),
        # Two large fields are cut to a common length; the small ones are kept whole.
        (200_000, {"exception": "e" * 200_000, "url": "u" * 500}, {"message", "exception"}),
    ],
)
def test_long_lines_are_cut_largest_first(message_bytes, other_fields, cut_fields):
    message = "m" * message_bytes
    entry, _ = sized({"severity": "ERROR", "message": message, **other_fields})
    assert entry["severity"] == "ERROR" and entry["truncated"] is True
    assert entry["message"].startswith("m" * min(message_bytes, 1000))
    for name, original in {"message": message, **other_fields}.items():
        if name in cut_fields:
            kept = entry[name].split("…", 1)[0]
            assert original.startswith(kept)
            assert truncated_bytes(entry[name]) == len(original) - len(kept)
        else:
            assert entry[name] == original
    if len(cut_fields) == 2:
        first, second = (len(entry[name]) for name in cut_fields)
        assert abs(first - second) <= 2


def test_line_at_the_limit_is_not_cut():
    base = {"severity": "INFO", "message": ""}
    room = MAX_LINE_BYTES - 1 - len(json.dumps(base).encode())
    entry, line = sized({"severity": "INFO", "message": "m" * room})
    assert len(line.encode()) == MAX_LINE_BYTES - 1 and "truncated" not in entry
    entry, _ = sized({"severity": "INFO", "message": "m" * (room + 1)})
    assert entry["truncated"] is True


@pytest.mark.parametrize(
    "message",
    [
        "é" * 100_000,  # two bytes each: the cut counts bytes, not characters
        "中" * 100_000,
        '"\\' * 100_000,  # each doubles when escaped
        "\x01" * 100_000,  # six bytes each when escaped
        "😀" * 100_000,
    ],
)
def test_cut_counts_serialized_bytes(message):
    entry, line = sized({"severity": "ERROR", "message": message, "n": 1})
    kept = entry["message"].split("… [truncated ", 1)[0]
    assert message.startswith(kept) and len(kept) > 1000
    assert truncated_bytes(entry["message"]) == len(message[len(kept) :].encode())
    assert len(line.encode()) > MAX_LINE_BYTES - 100, "the cut wastes little room"


def test_nested_strings_are_cut_too():
    entry, _ = sized({"severity": "ERROR", "message": "m", "page": {"events": ["x" * 100_000]}})
    assert entry["page"]["events"][0].startswith("x" * 1000)
    assert entry["message"] == "m"


def test_too_many_fields_leave_severity_and_the_message():
    fields = {f"field_{i:05d}_{'k' * 40}": i for i in range(3000)}
    entry, _ = sized({"severity": "WARNING", "message": "many fields", **fields})
    assert entry == {
        "severity": "WARNING",
        "message": "many fields",
        "truncated": True,
        "dropped_fields": 3000,
    }


def test_redaction_happens_before_the_cut(lines):
    key = KEYS[6]
    register_secret(key)
    # Place the key across every point near where the cut falls: no beginning of it may
    # survive, whichever of its characters the cut lands on.
    base = {"severity": "ERROR", "message": ""}
    room = MAX_LINE_BYTES - 1 - len(json.dumps(base).encode()) - len(', "truncated": true')
    for offset in range(room - 80, room + 20, 3):
        log(logging.ERROR, "m" * offset + key + "z" * 100_000)
        [entry], [raw] = lines()
        assert entry["truncated"] is True
        for size in range(4, len(key) + 1):
            assert key[:size] not in raw
            assert json.dumps(key)[1 : size + 1] not in raw


def test_five_megabyte_message_through_the_handler(lines):
    register_secret(KEYS[0])
    log(logging.ERROR, "Harness said: " + "x" * 5_000_000 + KEYS[0], status=500)
    [entry], _ = lines()
    assert entry["status"] == 500 and entry["truncated"] is True
    assert entry["message"].startswith("Harness said: xxx")
    assert truncated_bytes(entry["message"]) > 4_900_000
