"""Tests of harness_audit.paging: paging by time, on pages built by hand. No I/O."""

import json
import random
from collections import Counter
from dataclasses import replace

import pytest

from harness_audit.listing import (
    FIRST_PAGE,
    LIST,
    LIST_V2,
    Page,
    PageCursor,
    event_identity,
    parse_page,
)
from harness_audit.paging import (
    MAX_BURST_PAGES,
    MAX_BURST_PASSES,
    NEWEST_FIRST,
    NOT_AN_OBJECT,
    OLDEST_FIRST,
    OUT_OF_RANGE,
    Burst,
    PagingInconsistent,
    Position,
    read_page,
)


def ev(timestamp: int, audit_id: str) -> dict:
    return {"auditId": audit_id, "timestamp": timestamp}


def page(*items, more: bool = False, cursor: PageCursor | None = None) -> Page:
    return Page(list(items), more, cursor)


def ids(step) -> list[str]:
    return [taken.audit_id for taken in step.events]


# --- newest first ---------------------------------------------------------------------------


def test_newest_first_moves_upper_down_and_carries_the_edge_ids():
    position = Position(100, 200)
    assert position.request() == (100, 200, FIRST_PAGE)

    first = read_page(
        position, page(ev(200, "a"), ev(190, "b"), ev(150, "c"), ev(150, "d"), more=True)
    )
    assert ids(first) == ["a", "b", "c", "d"] and first.repeats == 0
    assert first.position == Position(100, 150, NEWEST_FIRST, frozenset({"c", "d"}))
    assert first.position.request() == (100, 150, FIRST_PAGE)

    # The edge millisecond is read again: what was taken there comes back as repeats.
    second = read_page(
        first.position, page(ev(150, "d"), ev(150, "c"), ev(150, "e"), ev(120, "f"), more=True)
    )
    assert ids(second) == ["e", "f"] and second.repeats == 2
    assert second.position == Position(100, 120, NEWEST_FIRST, frozenset({"f"}))

    # A short page does not end the range: a server may cap its pages below PAGE_SIZE.
    short = read_page(second.position, page(ev(120, "f"), ev(101, "g")))
    assert ids(short) == ["g"] and short.repeats == 1
    assert short.position.request() == (100, 101, FIRST_PAGE)
    # A page that brings nothing new, only the edge's millisecond, and fewer items than the
    # page before does: nothing was held back, so the range is read.
    last = read_page(short.position, page(ev(101, "g")))
    assert ids(last) == [] and last.position.done and last.burst_done is None


def test_a_capped_page_of_the_edge_millisecond_is_read_alone():
    # The page before held 2 items; this one as many, all at the edge: a server capping at 2
    # could hold more of 101 back, so 101 is read alone.
    position = read_page(Position(100, 200), page(ev(120, "f"), ev(101, "g"))).position
    step = read_page(position, page(ev(101, "g"), ev(101, "g2")))
    assert ids(step) == ["g2"] and step.position.burst_ms == 101
    position = read_page(
        Position(100, 101, NEWEST_FIRST, frozenset({"g", "h"})), page(ev(101, "g"), ev(101, "h"))
    ).position
    assert position.burst_ms == 101  # nothing new, but no page before to compare with


def test_edge_ids_accumulate_while_the_page_ends_on_the_same_millisecond():
    position = Position(100, 150, NEWEST_FIRST, frozenset({"a"}))
    step = read_page(position, page(ev(150, "a"), ev(150, "b"), ev(140, "c"), more=True))
    assert step.position.edge_ids == {"c"} and step.position.upper_ms == 140
    step = read_page(
        Position(100, 150, NEWEST_FIRST, frozenset({"a"})),
        page(ev(150, "a"), ev(150, "b"), ev(150, "c"), ev(149, "d"), ev(149, "e"), more=True),
    )
    assert step.position == Position(100, 149, NEWEST_FIRST, frozenset({"d", "e"}))


def test_ties_split_across_a_page_boundary_are_taken_once_each():
    # Five events share 150; a page of four cuts them, and the order of ties changes.
    position = Position(100, 200)
    first = read_page(
        position, page(ev(180, "x"), ev(150, "t3"), ev(150, "t1"), ev(150, "t5"), more=True)
    )
    second = read_page(
        first.position,
        page(
            ev(150, "t2"), ev(150, "t5"), ev(150, "t4"), ev(150, "t1"), ev(150, "t3"), ev(110, "y")
        ),
    )
    taken = ids(first) + ids(second)
    assert sorted(taken) == ["t1", "t2", "t3", "t4", "t5", "x", "y"]
    assert second.repeats == 3
    assert read_page(second.position, page(ev(110, "y"))).position.done


def test_duplicates_inside_one_page_are_repeats():
    step = read_page(Position(100, 200), page(ev(150, "a"), ev(150, "a"), ev(120, "b")))
    assert ids(step) == ["a", "b"] and step.repeats == 1


# --- bursts: a full page in one millisecond --------------------------------------------------


def burst_start() -> tuple[Position, list[str]]:
    """Newest first, then a full page all at 180: the millisecond is read alone."""
    first = read_page(Position(100, 200), page(ev(200, "a"), ev(180, "b"), more=True))
    step = read_page(
        first.position, page(ev(180, "b"), ev(180, "c"), more=True, cursor=PageCursor(index=1))
    )
    return step, ids(first) + ids(step)


def test_a_full_page_in_one_millisecond_starts_a_burst():
    step, taken = burst_start()
    assert taken == ["a", "b", "c"]
    assert step.repeats == 1 and step.burst_done is None
    position = step.position
    assert position.burst_ms == 180 and position.burst_pass == 1 and not position.burst_new
    assert position.edge_ids == {"b", "c"}
    # The millisecond alone, from the endpoint's first page.
    assert position.request() == (180, 180, FIRST_PAGE)
    assert not position.done


def test_burst_passes_repeat_while_a_pass_brings_new_ids_then_paging_goes_on_below():
    step, taken = burst_start()
    position = step.position
    answers = [
        # pass 1: two pages by the endpoint's cursor, one new id
        (page(ev(180, "c"), ev(180, "d"), more=True, cursor=PageCursor(index=1)), ["d"], 1),
        (page(ev(180, "b")), [], 2),
        # pass 2: brings nothing new: the burst is settled
        (page(ev(180, "d"), ev(180, "b"), more=True, cursor=PageCursor(index=1)), [], 2),
        (page(ev(180, "c")), [], None),
    ]
    for answer, new, pass_after in answers:
        step = read_page(position, answer)
        assert ids(step) == new
        taken += ids(step)
        position = step.position
        if pass_after is not None:
            assert position.burst_ms == 180 and position.burst_pass == pass_after
            expected_cursor = answer.next_cursor or FIRST_PAGE
            assert position.request() == (180, 180, expected_cursor)
            assert step.burst_done is None
    assert step.burst_done == Burst(ms=180, events=3, passes=2)
    # "b", "c", "d": the events taken at 180 before and during the burst
    assert position == Position(100, 179, NEWEST_FIRST)
    assert position.request() == (100, 179, FIRST_PAGE)
    assert sorted(taken) == ["a", "b", "c", "d"]


def test_a_burst_still_bringing_new_ids_after_max_passes_is_inconsistent():
    step, _ = burst_start()
    position = step.position
    for number in range(1, MAX_BURST_PASSES):
        assert position.burst_pass == number
        step = read_page(position, page(ev(180, f"new{number}")))
        assert ids(step) == [f"new{number}"] and step.burst_done is None
        position = step.position
    with pytest.raises(PagingInconsistent, match=f"new events after {MAX_BURST_PASSES} passes"):
        read_page(position, page(ev(180, "one-more")))


def test_a_burst_at_the_edge_keeps_the_ids_taken_there():
    # The page before ended at 150 with "a"; the next page is full and all at 150.
    position = Position(100, 150, NEWEST_FIRST, frozenset({"a"}))
    step = read_page(position, page(ev(150, "a"), ev(150, "b"), more=True))
    assert ids(step) == ["b"] and step.repeats == 1
    assert step.position.edge_ids == {"a", "b"} and step.position.burst_ms == 150


def test_a_burst_page_saying_hasnext_false_ends_the_pass():
    step, _ = burst_start()
    step = read_page(step.position, page(ev(180, "b"), ev(180, "c"), more=False, cursor=None))
    assert step.burst_done == Burst(180, 2, 1)


def test_a_burst_page_saying_more_without_a_usable_cursor_is_inconsistent():
    step, _ = burst_start()
    with pytest.raises(PagingInconsistent, match="names no page token"):
        read_page(step.position, page(ev(180, "b"), ev(180, "c"), more=True, cursor=None))


def test_a_cursor_that_repeats_is_inconsistent():
    step, _ = burst_start()
    token = PageCursor(token="same")
    position = read_page(step.position, page(ev(180, "b"), more=True, cursor=token)).position
    with pytest.raises(PagingInconsistent, match="repeated the page cursor"):
        read_page(position, page(ev(180, "c"), more=True, cursor=token))


def test_a_pass_past_max_pages_is_inconsistent():
    step, _ = burst_start()
    position = step.position
    with pytest.raises(PagingInconsistent, match=f"past {MAX_BURST_PAGES} pages"):
        for number in range(MAX_BURST_PAGES):
            answer = page(ev(180, "b"), more=True, cursor=PageCursor(token=f"t{number}"))
            position = read_page(position, answer).position


def test_a_short_list_page_in_a_burst_is_followed_by_a_probe_that_must_be_empty():
    """list under a cap: page 1 may start where page 0 should have ended, skipping events.
    A short first page is followed by a page of its own size, which must come back empty."""
    step, _ = burst_start()
    probe = PageCursor(index=1, size=2)
    short = read_page(step.position, page(ev(180, "b"), ev(180, "c"), cursor=probe))
    assert short.burst_done is None and short.position.request() == (180, 180, probe)
    done = read_page(short.position, page())
    assert done.burst_done == Burst(180, 2, 1)
    with pytest.raises(PagingInconsistent, match=r"caps its pages.*set PAGE_SIZE to 2"):
        read_page(short.position, page(ev(180, "x")))


# --- oldest first -----------------------------------------------------------------------------


def test_oldest_first_moves_lower_up():
    first = read_page(Position(100, 200), page(ev(100, "a"), ev(120, "b"), ev(120, "c"), more=True))
    assert first.position == Position(120, 200, OLDEST_FIRST, frozenset({"b", "c"}))
    assert first.position.request() == (120, 200, FIRST_PAGE)
    second = read_page(first.position, page(ev(120, "c"), ev(120, "b"), ev(130, "d"), more=True))
    assert ids(second) == ["d"] and second.repeats == 2
    assert second.position == Position(130, 200, OLDEST_FIRST, frozenset({"d"}))
    short = read_page(second.position, page(ev(130, "d"), ev(199, "e")))
    assert ids(short) == ["e"] and short.position.request() == (199, 200, FIRST_PAGE)
    assert read_page(short.position, page(ev(199, "e"))).position.done


def test_order_is_learned_from_the_first_page_with_two_timestamps():
    # A burst at the upper edge teaches nothing about the order...
    step = read_page(Position(100, 200), page(ev(200, "a"), ev(200, "b"), more=True))
    assert step.position.order is None
    step = read_page(step.position, page(ev(200, "b"), ev(200, "a")))
    assert step.position == Position(100, 199)
    # ...a page with two timestamps does.
    step = read_page(step.position, page(ev(110, "c"), ev(150, "d"), more=True))
    assert step.position == Position(150, 199, OLDEST_FIRST, frozenset({"d"}))


@pytest.mark.parametrize(
    ("learned", "items"),
    [
        pytest.param(NEWEST_FIRST, [ev(110, "x"), ev(150, "y")], id="newest-then-oldest"),
        pytest.param(OLDEST_FIRST, [ev(150, "x"), ev(110, "y")], id="oldest-then-newest"),
    ],
)
@pytest.mark.parametrize("more", [True, False])
def test_a_page_in_the_other_order_is_inconsistent(learned, items, more):
    position = Position(100, 200, learned)
    with pytest.raises(PagingInconsistent, match="after pages that came"):
        read_page(position, page(*items, more=more))


@pytest.mark.parametrize("order", [None, NEWEST_FIRST, OLDEST_FIRST])
def test_a_page_in_neither_order_is_inconsistent(order):
    with pytest.raises(PagingInconsistent, match="neither timestamp order"):
        read_page(Position(100, 200, order), page(ev(150, "a"), ev(110, "b"), ev(160, "c")))


# --- order unknown, burst: which sides are left --------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "after", "pending"),
    [
        pytest.param(150, (151, 200), ((100, 149),), id="inside-both-sides"),
        pytest.param(200, (100, 199), (), id="at-upper-only-below"),
        pytest.param(100, (101, 200), (), id="at-lower-only-above"),
    ],
)
def test_burst_with_order_unknown_leaves_the_sides_it_cannot_rule_out(ms, after, pending):
    step = read_page(Position(100, 200), page(ev(ms, "a"), ev(ms, "b"), more=True))
    assert step.position.burst_ms == ms
    step = read_page(step.position, page(ev(ms, "a"), ev(ms, "b")))
    assert step.burst_done == Burst(ms, 2, 1)
    position = step.position
    assert (position.lower_ms, position.upper_ms) == after
    assert position.pending == pending
    assert position.order is None and not position.done
    # The other side is read once this one is.
    last = read_page(position, page())
    if pending:
        assert (last.position.lower_ms, last.position.upper_ms) == pending[0]
        assert not last.position.done
        assert read_page(last.position, page()).position.done
    else:
        assert last.position.done


@pytest.mark.parametrize("order", [NEWEST_FIRST, OLDEST_FIRST])
def test_burst_with_order_known_leaves_one_side(order):
    ms = 200 if order == NEWEST_FIRST else 100
    step = read_page(Position(100, 200, order), page(ev(ms, "a"), ev(ms, "b"), more=True))
    step = read_page(step.position, page(ev(ms, "b"), ev(ms, "a")))
    expected = (100, 199) if order == NEWEST_FIRST else (101, 200)
    assert (step.position.lower_ms, step.position.upper_ms) == expected
    assert step.position.pending == ()


@pytest.mark.parametrize(
    ("position", "burst_ms"),
    [
        # Order unknown, a burst inside left [100, 149] to read; now [151, 151] is a burst
        # too: after it, the range above is empty and the pending side must come next.
        pytest.param(Position(151, 151, pending=((100, 149),)), 151, id="unknown-order"),
        # Order learned later as newest first: a burst at the lower edge empties the range.
        pytest.param(Position(151, 160, NEWEST_FIRST, pending=((100, 149),)), 151, id="newest"),
        pytest.param(Position(151, 160, OLDEST_FIRST, pending=((100, 149),)), 160, id="oldest"),
    ],
)
def test_a_burst_that_empties_the_range_moves_on_to_the_pending_side(position, burst_ms):
    step = read_page(position, page(ev(burst_ms, "a"), ev(burst_ms, "b"), more=True))
    step = read_page(step.position, page(ev(burst_ms, "b"), ev(burst_ms, "a")))
    after = step.position
    # Never a request whose start lies after its end (Harness answers 400 to it).
    start, end, _ = after.request()
    assert start <= end
    assert (start, end) == (100, 149) and after.pending == ()


# --- listV2's hasNext --------------------------------------------------------------------------


def test_has_next_on_a_short_page_continues_from_the_new_upper():
    step = read_page(Position(100, 200), page(ev(200, "a"), ev(190, "b"), more=True))
    assert not step.position.done
    assert step.position.request() == (100, 190, FIRST_PAGE)
    assert step.position.edge_ids == {"b"}


# --- what is not written ---------------------------------------------------------------------


BAD_ITEMS = [1, "text", None, ["a"], {"auditId": "early", "timestamp": 99}, ev(201, "late")]


def test_items_that_cannot_be_trusted_are_counted_never_taken():
    step = read_page(Position(100, 200), page(ev(150, "good"), ev(140, "ok"), *BAD_ITEMS))
    assert ids(step) == ["good", "ok"]
    assert step.rejected == {NOT_AN_OBJECT: 4, OUT_OF_RANGE: 2}
    assert step.rejected_sample == "a JSON int"


def test_rejected_items_are_counted_in_a_burst_too():
    step, _ = burst_start()
    step = read_page(step.position, page(ev(180, "d"), ev(179, "below"), 7))
    assert ids(step) == ["d"]
    assert step.rejected == {OUT_OF_RANGE: 1, NOT_AN_OBJECT: 1}
    assert step.rejected_sample == "below"


def test_the_sample_names_the_first_rejected_event():
    step = read_page(Position(100, 200), page({"auditId": "late", "timestamp": 500}))
    assert step.rejected == {OUT_OF_RANGE: 1} and step.rejected_sample == "late"


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(BAD_ITEMS, id="all-bad"),
        pytest.param([ev(99, "a"), ev(201, "b")], id="all-outside"),
        pytest.param([], id="empty"),
    ],
)
def test_a_page_saying_more_without_an_event_in_range_is_inconsistent(items):
    with pytest.raises(PagingInconsistent, match="no event stamped inside"):
        read_page(Position(100, 200), page(*items, more=True))


# --- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stamp", [150, "150", 150.0], ids=["int", "digit-string", "whole-float"])
def test_a_digit_string_or_a_whole_float_is_the_millisecond_it_denotes(stamp):
    event = {"auditId": "a", "timestamp": stamp}
    step = read_page(Position(100, 200, NEWEST_FIRST), page(ev(160, "x"), event))
    assert [(t.audit_id, t.timestamp) for t in step.events] == [("x", 160), ("a", 150)]
    assert event_identity(event, fallback_ms=0) == ("a", 150)


@pytest.mark.parametrize(
    ("stamp", "shape"),
    [
        (None, "no timestamp"),
        ("2025-06-10T12:00:00Z", "a string timestamp"),
        ("-150", "a string timestamp"),
        ("1" * 40, "a string timestamp"),
        (150.5, "a fractional or non-finite number"),
        (float("nan"), "a fractional or non-finite number"),
        (True, "a JSON bool"),
        ({"$date": 150}, "a JSON dict"),
    ],
)
def test_an_event_that_cannot_be_placed_in_time_is_inconsistent(stamp, shape):
    event = {"auditId": "secret-shaped", "timestamp": stamp}
    if stamp is None:
        del event["timestamp"]
    with pytest.raises(PagingInconsistent, match=shape) as failure:
        read_page(Position(100, 200), page(ev(150, "a"), event))
    assert "event secret-shaped has" in str(failure.value)
    assert "2025-06-10" not in str(failure.value) and "$date" not in str(failure.value)
    assert event_identity(event, fallback_ms=7) == ("secret-shaped", 7)


# --- listing: what a page says about more ------------------------------------------------------


def body(data: dict) -> bytes:
    return json.dumps({"status": "SUCCESS", "data": data}).encode()


def test_listv2_more_with_the_cursor_under_another_name_has_no_cursor():
    data = {"content": [ev(1, "a")], "hasNext": True, "nextPageToken": "abc"}
    parsed = parse_page(body(data), endpoint=LIST_V2, cursor=FIRST_PAGE, size=100)
    assert parsed.has_more and parsed.next_cursor is None
    data = {"content": [ev(1, "a")] * 100, "hasNext": False, "pageToken": None}
    parsed = parse_page(body(data), endpoint=LIST_V2, cursor=FIRST_PAGE, size=100)
    assert not parsed.has_more and parsed.next_cursor is None


def test_a_short_first_list_page_names_a_probe_of_its_own_size():
    data = {"content": [ev(1, "a")] * 50, "totalPages": 1}
    parsed = parse_page(body(data), endpoint=LIST, cursor=FIRST_PAGE, size=100)
    assert not parsed.has_more and parsed.next_cursor == PageCursor(index=1, size=50)
    later = parse_page(body(data), endpoint=LIST, cursor=PageCursor(index=3), size=100)
    assert later.next_cursor is None  # after full pages: no cap, a short page is the end
    empty = parse_page(body({"content": []}), endpoint=LIST, cursor=FIRST_PAGE, size=100)
    assert empty.next_cursor is None


# --- every event exactly once, whatever the server does ------------------------------------------


class Server:
    """Harness's listing over ``events``: one order, ties reshuffled on every request, offset
    paging (list's pageIndex). Events can be published between requests."""

    def __init__(self, rng, events, *, order, page_size, stable_passes, short_has_next, cap):
        self.rng = rng
        self.events = list(events)
        self.order = order
        self.page_size = page_size
        # True: a millisecond read alone keeps its tie order from page 0 to the last page of
        # a pass (one query plan); False: reshuffled on every request, pages overlap and skip.
        self.stable_passes = stable_passes
        self.short_has_next = short_has_next  # listV2's hasNext on some short pages
        # (cap, skips): at most `cap` items a page, whatever was asked; page i starts at i
        # times the size asked (skips) or at i times the size served.
        self.cap = cap or (page_size, False)
        self.pass_order: list[dict] = []
        self.requests = 0

    def answer(self, start, end, cursor) -> Page:
        self.requests += 1
        assert start <= end, f"Harness answers 400 to startTime {start} > endTime {end}"
        if start == end and cursor.index and self.stable_passes:
            matching = self.pass_order
        else:
            matching = [e for e in self.events if start <= e["timestamp"] <= end]
            self.rng.shuffle(matching)
            matching.sort(key=lambda e: e["timestamp"], reverse=self.order == NEWEST_FIRST)
            self.pass_order = matching
        served, skips = self.cap
        asked = cursor.size or self.page_size
        served = min(asked, served)
        items = matching[cursor.index * (asked if skips else served) :][:served]
        full = len(items) >= self.page_size
        has_next = bool(items) and start < end and self.short_has_next and self.rng.random() < 0.2
        if full or has_next:
            return Page(items, True, PageCursor(index=cursor.index + 1) if full else None)
        probe = PageCursor(index=1, size=len(items)) if items and cursor == FIRST_PAGE else None
        return Page(items, False, probe)


def random_events(rng, count, lower, upper, prefix="e"):
    stamps = [rng.randint(lower, upper) for _ in range(count)]
    # Bursts: a few milliseconds holding many events (over and under the page size).
    for _ in range(rng.randint(0, 3)):
        stamps += [rng.randint(lower, upper)] * rng.randint(2, 25)
    return [ev(stamp, f"{prefix}{n}") for n, stamp in enumerate(stamps)]


def drive(rng, *, stable_passes, late_events, capped=None):
    lower, upper = 1_000, 1_000 + rng.choice([0, 1, 3, 30, 200])
    events = random_events(rng, rng.randint(0, 60), lower, upper)
    order = rng.choice([NEWEST_FIRST, OLDEST_FIRST])
    page_size = rng.randint(1, 10)
    served = rng.randint(1, page_size) if capped else page_size
    cap = {None: None, "follows": (served, False), "skips": (served, True)}[capped]
    server = Server(
        rng,
        events,
        order=order,
        page_size=page_size,
        stable_passes=stable_passes,
        short_has_next=rng.random() < 0.3,
        cap=cap,
    )
    position = Position(lower, upper)
    taken: Counter = Counter()
    bursts: list[Burst] = []
    late = 0
    while not position.done:
        assert server.requests < 5_000, "paging does not end"
        step = read_page(position, server.answer(*position.request()))
        position = step.position
        if step.burst_done:
            bursts.append(step.burst_done)
        taken.update(taken.audit_id for taken in step.events)
        if rng.random() < 0.05:  # resumed from the checkpoint, which keeps only saved fields
            position = replace(Position(position.lower_ms, position.upper_ms), **saved(position))
        reading = position.burst_ms is None and position.lower_ms <= position.upper_ms
        if late_events and reading and rng.random() < 0.3:
            # Visible late, stamped inside what is left to read: it must be taken.
            stamp = rng.randint(position.lower_ms, position.upper_ms)
            server.events.append(ev(stamp, f"late{late}"))
            late += 1
    return server.events, taken, bursts


def saved(position: Position) -> dict:
    names = ("order", "edge_ids", "burst_ms", "burst_pass", "burst_new", "pending")
    return {name: getattr(position, name) for name in names}


def exactly_once(events, taken) -> list[str]:
    wanted = Counter(e["auditId"] for e in events)
    return [f"{i}: taken {taken[i]} times" for i in wanted | taken if taken[i] != wanted[i]]


@pytest.mark.parametrize("seed", range(6))
def test_every_event_is_taken_exactly_once(seed):
    rng = random.Random(seed)
    for case in range(60):
        events, taken, _ = drive(rng, stable_passes=True, late_events=case % 2 == 1)
        assert not exactly_once(events, taken), (seed, case)


@pytest.mark.parametrize("seed", range(3))
def test_a_burst_reshuffled_on_every_page_is_never_taken_twice(seed):
    """Offset pages over ties that move between requests can skip an event of a burst: the
    passes exist to find it. Nothing may be taken twice, and only burst milliseconds may
    lose anything."""
    rng = random.Random(100 + seed)
    for case in range(60):
        events, taken, bursts = drive(rng, stable_passes=False, late_events=case % 2 == 1)
        assert max(taken.values(), default=0) <= 1, (seed, case)
        burst_ms = {burst.ms for burst in bursts}
        for event in events:
            if not taken[event["auditId"]]:
                assert event["timestamp"] in burst_ms, (seed, case, event)


@pytest.mark.parametrize("seed", range(4))
def test_a_server_capping_its_pages_loses_nothing_or_fails_loudly(seed):
    """Pages shorter than asked, page i starting at i times the cap or at i times the size
    asked (which skips): paging cannot tell the two apart, so it takes every event once or,
    when a millisecond outgrows the cap, raises."""
    rng = random.Random(200 + seed)
    outcomes = Counter()
    for case in range(60):
        capped = "follows" if case % 2 else "skips"
        try:
            events, taken, _ = drive(rng, stable_passes=True, late_events=False, capped=capped)
        except PagingInconsistent as exc:
            assert "caps its pages" in str(exc), (seed, case, exc)
            outcomes["failed"] += 1
            continue
        assert not exactly_once(events, taken), (seed, case, capped)
        outcomes["exactly once"] += 1
    assert outcomes["exactly once"] and outcomes["failed"]
