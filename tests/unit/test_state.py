import json

import pytest

from harness_audit.errors import StateCorrupt
from harness_audit.paging import NEWEST_FIRST, Position
from harness_audit.state import (
    ORIGIN_GUIDE,
    Lease,
    State,
    WindowProgress,
    decode_state,
    encode_state,
)


def roundtrip(state: State) -> State:
    return decode_state(encode_state(state, updated_ms=1, version="test"))


def test_empty_state_roundtrips():
    assert roundtrip(State()) == State()


def test_full_state_roundtrips():
    window = WindowProgress(
        start_ms=100,
        end_ms=900,
        position=Position(
            100, 700, NEWEST_FIRST, frozenset({"e1", "e2"}), 650, 2, True, pending=((1, 5),)
        ),
        next_part=3,
        pages=7,
        events_written=650,
        committed={"a": 850},
        ahead={"b": 500},
    )
    state = State(
        watermark_ms=400,
        delivered={"x": 395, "y": 399},
        window=window,
        lease=Lease("owner-1", 5_000),
    )
    assert roundtrip(state) == state


def test_version_1_window_is_read_again_from_its_top():
    v1 = (
        b'{"version": 1, "watermark_ms": 50, "delivered": {}, "window": {"start_ms": 10, '
        b'"end_ms": 90, "endpoint": "listV2", "page_token": "tok", "page_index": 0, '
        b'"next_part": 3, "pages": 7, "events_written": 650, "committed": {"a": 85}, '
        b'"ahead": {}}, "lease": null}'
    )
    window = decode_state(v1).window
    assert window.position == Position(10, 90)
    assert window.next_part == 3 and window.reread_parts is True
    assert window.committed == {"a": 85}


def test_encoding_is_compact_json_with_version():
    document = json.loads(encode_state(State(watermark_ms=5), updated_ms=9, version="1.2.3"))
    assert document["version"] == 2
    assert document["collector_version"] == "1.2.3"
    assert document["updated_ms"] == 9


@pytest.mark.parametrize(
    ("document", "pageToken"),
    [
        ({"since": 1749560400000, "pageToken": None}, None),
        ({"since": 1749560400000, "pageToken": "abc", "lastRun": 1, "lastRunISO": "x"}, "abc"),
    ],
)
def test_guide_format_is_migrated(document, pageToken):
    state = decode_state(json.dumps(document).encode())
    assert state.origin == ORIGIN_GUIDE
    assert state.watermark_ms == 1749560400000
    # The guide's token belongs to a body it never kept: the window restarts instead.
    assert state.window is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{truncated", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"version": 3}', "version is 3"),
        (b'{"version": true}', "version is True"),
        (b'{"hello": 1}', "version is None"),
        (b'{"since": "yesterday"}', "'since' is 'yesterday'"),
        (b'{"since": -5}', "not epoch milliseconds"),
        (b'{"version": 1, "watermark_ms": "soon"}', "wrong type"),
        (b'{"version": 1, "delivered": {"a": "x"}}', "wrong type"),
        (b'{"version": 1, "delivered": []}', "wrong type"),
        (b'{"version": 1, "window": {"start_ms": 1}}', "missing"),
        (b'{"version": 1, "lease": {"owner": 5, "expires_ms": 1}}', "wrong type"),
        (
            b'{"version": 1, "window": {"start_ms": 9, "end_ms": 1, "endpoint": "listV2", '
            b'"page_index": 0, "next_part": 1, "pages": 0, "events_written": 0}}',
            "ends before it starts",
        ),
        (b'{"version": 1, "watermark_ms": 1e16}', "wrong type"),
        (b'{"version": 1, "watermark_ms": 300000000000000000}', "1970 to 9999"),
        (b'{"version": 1, "watermark_ms": -5}', "1970 to 9999"),
        (b'{"since": 10000000000000000}', "not epoch milliseconds"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
    ],
)
def test_invalid_state_says_why(data, reason):
    with pytest.raises(StateCorrupt) as caught:
        decode_state(data)
    assert reason in str(caught.value)


def test_lease_liveness():
    lease = Lease("o", expires_ms=1000)
    assert lease.is_live(999)
    assert not lease.is_live(1000)
