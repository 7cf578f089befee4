import json

import pytest

from harness_audit.errors import StateCorrupt
from harness_audit.paging import NEWEST_FIRST, Position
from harness_audit.state import (
    ORIGIN_GUIDE,
    Lease,
    State,
    WindowProgress,
    check_times,
    decode_state,
    encode_state,
    new_window,
)

NOW = 1_749_564_000_000
MIN = 60_000
DAY = 86_400_000


def window(**fields) -> bytes:
    """A version 2 checkpoint whose window [1000, 2000] has ``fields`` changed."""
    raw = {"start_ms": 1_000, "end_ms": 2_000, "lower_ms": 1_000, "upper_ms": 2_000}
    raw |= {"burst_pass": 1, "next_part": 1, "pages": 0, "events_written": 0}
    return json.dumps({"version": 2, "window": raw | fields}).encode()


def roundtrip(state: State) -> State:
    return decode_state(encode_state(state, updated_ms=1, version="test"))


def test_empty_state_roundtrips():
    assert roundtrip(State()) == State()


def test_full_state_roundtrips():
    window = WindowProgress(
        start_ms=100,
        end_ms=900,
        position=Position(
            100, 700, NEWEST_FIRST, frozenset({"e1", "e2"}), 650, 2, True, pending=((100, 140),)
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
        # Version 1 (a page token instead of a position) lived three days on main only.
        (b'{"version": 1, "watermark_ms": 5}', "version is 1"),
        (b'{"version": 2, "watermark_ms": "soon"}', "wrong type"),
        (b'{"version": 2, "delivered": {"a": "x"}}', "wrong type"),
        (b'{"version": 2, "delivered": []}', "wrong type"),
        (b'{"version": 2, "window": {"start_ms": 1}}', "missing"),
        (b'{"version": 2, "lease": {"owner": 5, "expires_ms": 1}}', "wrong type"),
        (window(start_ms=9, end_ms=1, lower_ms=9, upper_ms=1), "ends before it starts"),
        (window(burst_ms=5_000), "burst_ms or window.pending lies outside"),
        (window(pending=[[1, 50]]), "burst_ms or window.pending lies outside"),
        (window(lower_ms=2_002), "position lies outside"),
        (window(lower_ms=999), "position lies outside"),
        (window(upper_ms=2_001), "position lies outside"),
        (b'{"version": 2, "watermark_ms": 1e16}', "wrong type"),
        (b'{"version": 2, "watermark_ms": 300000000000000000}', "1970 to 9999"),
        (b'{"version": 2, "watermark_ms": -5}', "1970 to 9999"),
        (b'{"since": 10000000000000000}', "not epoch milliseconds"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
    ],
)
def test_invalid_state_says_why(data, reason):
    with pytest.raises(StateCorrupt) as caught:
        decode_state(data)
    assert reason in str(caught.value)


def test_a_window_read_to_its_end_is_still_valid():
    """Read oldest first up to its end, a window's lower bound is one past the end."""
    state = decode_state(window(lower_ms=2_001, upper_ms=2_000, order="oldest_first"))
    assert state.window.position.lower_ms == 2_001


@pytest.mark.parametrize(
    ("state", "says"),
    [
        (State(watermark_ms=NOW + 2 * MIN), "lies after now"),
        (State(watermark_ms=1), "older than the longest lookback"),
        (State(watermark_ms=NOW - 367 * DAY), "older than the longest lookback"),
        (State(window=new_window(NOW - 367 * DAY, NOW)), "window's start_ms"),
        (State(window=new_window(NOW - DAY, NOW + DAY)), "window's end_ms"),
    ],
)
def test_times_no_run_can_have_saved_are_refused(state, says):
    with pytest.raises(StateCorrupt, match=says):
        check_times(state, NOW, max_lookback_ms=366 * DAY)


def test_times_within_bounds_pass():
    state = State(watermark_ms=NOW - 365 * DAY, window=new_window(NOW - DAY, NOW))
    check_times(state, NOW, max_lookback_ms=366 * DAY)


def test_lease_liveness():
    lease = Lease("o", expires_ms=1000)
    assert lease.is_live(999)
    assert not lease.is_live(1000)
