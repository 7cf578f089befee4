import pytest

from harness_audit.listing import event_identity
from harness_audit.paging import Position
from harness_audit.state import State, WindowProgress
from harness_audit.window import complete_window, plan_window, tail_ids

MIN = 60_000
NOW = 1_749_564_000_000


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        # First run: the configured lookback.
        (State(), (NOW - 60 * MIN, NOW)),
        # Steady state: from the previous end minus the overlap, to now.
        (State(watermark_ms=NOW - 60 * MIN), (NOW - 70 * MIN, NOW)),
        # A clock behind the watermark never makes a window end earlier than the last.
        (State(watermark_ms=NOW + 5 * MIN), (NOW - 5 * MIN, NOW + 5 * MIN)),
    ],
)
def test_new_window_bounds(state, expected):
    window = plan_window(state, NOW, overlap_ms=10 * MIN, first_lookback_ms=60 * MIN)
    assert (window.start_ms, window.end_ms) == expected
    assert window.position == Position(*expected) and window.next_part == 1


def test_unfinished_window_is_resumed_unchanged():
    unfinished = WindowProgress(start_ms=1, end_ms=2, position=Position(1, 1), next_part=4)
    state = State(watermark_ms=0, window=unfinished)
    assert plan_window(state, NOW, overlap_ms=0, first_lookback_ms=MIN) is unfinished


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"auditId": "a1", "timestamp": 5}, ("a1", 5)),
        ({"auditEventId": "a2", "auditEventTime": "7"}, ("a2", 7)),  # streaming layout
        ({"auditId": "a3"}, ("a3", 99)),  # no timestamp: the window end
        ({"auditId": "a4", "timestamp": True}, ("a4", 99)),
    ],
)
def test_event_identity(event, expected):
    assert event_identity(event, fallback_ms=99) == expected


def test_event_without_id_gets_a_stable_content_hash():
    first = event_identity({"timestamp": 1, "module": "CD"}, 0)
    again = event_identity({"module": "CD", "timestamp": 1}, 0)
    other = event_identity({"timestamp": 1, "module": "CI"}, 0)
    assert first == again and first[0].startswith("sha256:") and first != other


def test_tail_ids():
    assert tail_ids([("a", 1), ("b", 5), ("c", 9)], 5) == {"b": 5, "c": 9}


def test_complete_window_keeps_every_id_in_the_next_overlap():
    window = WindowProgress(
        start_ms=1_000,
        end_ms=2_000,
        position=Position(1_000, 999),
        committed={"w1": 1_950, "w2": 1_900},
        ahead={"x1": 1_990, "x_old": 1_100},
    )
    # Window shorter than the overlap: ids delivered before it are still in the next one.
    state = State(watermark_ms=1_500, delivered={"p1": 1_400, "p_old": 1_000})
    done = complete_window(state, window, overlap_ms=700)
    assert done.watermark_ms == 2_000
    assert done.window is None
    assert done.delivered == {"p1": 1_400, "w1": 1_950, "w2": 1_900, "x1": 1_990}
