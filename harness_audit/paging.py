"""Paging by time: which range to ask Harness for next, and what a page means. Pure: no I/O.
The *edge* and *burst* are explained in docs/DESIGN.md (Paging by time)."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from harness_audit.listing import FIRST_PAGE, Page, PageCursor, event_identity, timestamp_ms

NEWEST_FIRST = "newest_first"
OLDEST_FIRST = "oldest_first"
ORDERS = (NEWEST_FIRST, OLDEST_FIRST)
MAX_BURST_PASSES = 20
MAX_BURST_PAGES = 500  # in one pass: 50,000 events in one millisecond at 100 a page

NOT_AN_OBJECT = "not_an_object"
OUT_OF_RANGE = "out_of_range"
REPEATED_IN_PAGE = "repeated_in_page"


class PagingInconsistent(ValueError):
    """A page that time-driven paging cannot trust: nothing from it may be written."""


class Unplaceable(PagingInconsistent):
    """An event whose timestamp cannot be placed in time (verify counts it as missing)."""


@dataclass(frozen=True)
class Position:
    """How far a window has been read. Everything outside ``[lower_ms, upper_ms]`` (and
    ``pending``) is read; ``edge_ids`` are the ids already taken at the moving edge."""

    lower_ms: int
    upper_ms: int
    order: str | None = None
    edge_ids: frozenset[str] = frozenset()
    burst_ms: int | None = None
    burst_pass: int = 1
    burst_new: bool = False  # the current pass brought an id not seen before
    pending: tuple[tuple[int, int], ...] = ()
    # Not saved in the checkpoint, nor compared: a resumed run restarts the pass, or needs
    # one more page to end a range, which is safe.
    burst_cursor: PageCursor = field(default=FIRST_PAGE, compare=False)
    burst_pages: int = field(default=0, compare=False)  # pages read in this pass
    last_count: int = field(default=0, compare=False)  # items on the page before

    @property
    def done(self) -> bool:
        return self.burst_ms is None and self.lower_ms > self.upper_ms and not self.pending

    def request(self) -> tuple[int, int, PageCursor]:
        if self.burst_ms is not None:
            return self.burst_ms, self.burst_ms, self.burst_cursor
        return self.lower_ms, self.upper_ms, FIRST_PAGE


@dataclass(frozen=True)
class Taken:
    event: dict
    audit_id: str
    timestamp: int


@dataclass(frozen=True)
class Burst:
    """A millisecond read alone, settled by a pass that brought no new id: for the log."""

    ms: int
    events: int
    passes: int


@dataclass(frozen=True)
class Step:
    """What one page brings, and where paging stands after it."""

    events: list[Taken]  # new to this window's paging, in page order
    repeats: int  # events already taken at the edge, or twice in this page
    rejected: dict[str, int]  # items not written, by reason
    rejected_sample: str | None  # one rejected item's auditId (or a description), for the log
    position: Position
    burst_done: Burst | None = None


def read_page(position: Position, page: Page) -> Step:
    """Interpret ``page``, the answer to ``position.request()``."""
    start, end, _ = position.request()
    in_range, rejected, sample = _screen(page.items, start, end)
    new = [taken for taken in in_range if taken.audit_id not in position.edge_ids]
    repeats = len(in_range) - len(new) + rejected.pop(REPEATED_IN_PAGE, 0)
    if position.burst_ms is not None:
        return Step(new, repeats, rejected, sample, *_burst_page(position, page, new))
    order = _page_order(in_range, position.order)
    learned = replace(position, order=order, last_count=len(page.items))
    distinct = {taken.timestamp for taken in in_range}
    if not distinct and page.has_more:
        raise PagingInconsistent(
            f"a page that says there is more held no event stamped inside the range asked "
            f"for [{start}, {end}] ({sum(rejected.values())} items outside it)"
        )
    edge_ms, edge_ids = _edge(learned, in_range)
    if len(distinct) > 1:
        bound = "lower_ms" if order == OLDEST_FIRST else "upper_ms"
        after = replace(learned, **{bound: edge_ms}, edge_ids=edge_ids)
    elif distinct and (new or page.has_more or len(page.items) >= position.last_count):
        # One millisecond, and nothing proves it was served whole: read it alone.
        after = replace(learned, edge_ids=edge_ids, burst_ms=edge_ms, burst_pass=1, burst_new=False)
    else:  # an empty page, or one millisecond proven whole: the range is read
        after = _next_range(learned)
    return Step(new, repeats, rejected, sample, after)


def _screen(items: Iterable, start: int, end: int) -> tuple:
    """The page's events stamped inside ``[start, end]``, each id once; the rest counted by
    reason, with a sample. A second copy of an id in a page says nothing new, and must not
    be mistaken for a break in the page's order."""
    in_range: dict[str, Taken] = {}
    rejected: Counter[str] = Counter()
    sample = None
    for item in items:
        if not isinstance(item, dict):
            reason, description = NOT_AN_OBJECT, f"a JSON {type(item).__name__}"
        else:
            audit_id, _ = event_identity(item, fallback_ms=0)
            timestamp = timestamp_ms(item.get("timestamp"))
            if timestamp is None:
                raise Unplaceable(_unplaceable(audit_id, item.get("timestamp")))
            if audit_id not in in_range and start <= timestamp <= end:
                in_range[audit_id] = Taken(item, audit_id, timestamp)
                continue
            reason = REPEATED_IN_PAGE if audit_id in in_range else OUT_OF_RANGE
            description = audit_id
        rejected[reason] += 1
        sample = sample or description
    return list(in_range.values()), rejected, sample


def _unplaceable(audit_id: str, value: object) -> str:
    """Why an event cannot be placed in time: its type, never its value (it is untrusted)."""
    shape = {type(None): "no timestamp", str: "a string timestamp that is not a whole number"}
    shape[float] = "a fractional or non-finite number as its timestamp"
    shape = shape.get(type(value), f"a JSON {type(value).__name__} as its timestamp")
    return (
        f"event {audit_id[:80]} has {shape}, where Harness's API documents epoch milliseconds: "
        "it can be neither deduplicated nor proven delivered, so the API may have changed and "
        "a person must look"
    )


def _page_order(in_range: list[Taken], known: str | None) -> str | None:
    """The order pages come in: ``known``, or learned from a page with two timestamps."""
    stamps = [taken.timestamp for taken in in_range]
    newest_first = stamps == sorted(stamps, reverse=True)
    oldest_first = stamps == sorted(stamps)
    if newest_first and oldest_first:  # one timestamp, or none: the page cannot tell
        return known
    if newest_first == oldest_first:
        raise PagingInconsistent(
            "a page came in neither timestamp order (newest first nor oldest first), so paging "
            "by time cannot tell what it has read"
        )
    order = NEWEST_FIRST if newest_first else OLDEST_FIRST
    if known not in (None, order):
        raise PagingInconsistent(
            f"a page came {order.replace('_', ' ')} after pages that came {known.replace('_', ' ')}"
        )
    return order


def _edge(position: Position, taken: list[Taken]) -> tuple[int, frozenset[str]]:
    """The page's last millisecond and every id taken at it, on this page or before."""
    edge_ms = position.lower_ms if position.order == OLDEST_FIRST else position.upper_ms
    edge_ids = set(position.edge_ids)
    for item in taken:
        if item.timestamp != edge_ms:
            edge_ms, edge_ids = item.timestamp, set()
        edge_ids.add(item.audit_id)
    return edge_ms, frozenset(edge_ids)


def _burst_page(position: Position, page: Page, new: list[Taken]) -> tuple:
    """The burst's position after one of its pages, and the Burst once it is settled."""
    ms, cursor, probe = position.burst_ms, page.next_cursor, position.burst_cursor.size
    if probe is not None and page.items:
        raise PagingInconsistent(
            f"Harness served {probe} events of the {ms} millisecond on a page that asked for "
            f"PAGE_SIZE, and had more: it caps its pages, and page indexes under a cap skip "
            f"events; set PAGE_SIZE to {probe}"
        )
    if cursor == position.burst_cursor:  # so a cursor: the burst's is never None
        raise PagingInconsistent(f"Harness repeated the page cursor it was sent, at {ms}")
    if position.burst_pages + 1 >= MAX_BURST_PAGES:
        raise PagingInconsistent(f"the {ms} millisecond ran past {MAX_BURST_PAGES} pages")
    if page.has_more and cursor is None:
        raise PagingInconsistent(
            f"a page of the {ms} millisecond says there is more but names no page token the "
            "collector can follow (the cursor's field may have changed name)"
        )
    edge_ids = position.edge_ids.union(taken.audit_id for taken in new)
    position = replace(position, edge_ids=edge_ids, burst_new=position.burst_new or bool(new))
    if cursor is not None:
        return replace(position, burst_cursor=cursor, burst_pages=position.burst_pages + 1), None
    if not position.burst_new:
        return _after_burst(position), Burst(ms, len(edge_ids), position.burst_pass)
    if position.burst_pass >= MAX_BURST_PASSES:
        raise PagingInconsistent(
            f"the {ms} millisecond still brought new events after {MAX_BURST_PASSES} passes"
        )
    next_pass = {"burst_pass": position.burst_pass + 1, "burst_new": False, "burst_pages": 0}
    return replace(position, **next_pass, burst_cursor=FIRST_PAGE), None


def _after_burst(position: Position) -> Position:
    """The range left once the burst's millisecond is read in full. A side the order has not
    ruled out is read next; an empty one never is, as Harness refuses a start after its end."""
    ms, lower, upper = position.burst_ms, position.lower_ms, position.upper_ms
    below = (lower, ms - 1) if position.order != OLDEST_FIRST else None
    above = (ms + 1, upper) if position.order != NEWEST_FIRST else None
    sides = tuple(side for side in (below, above) if side and side[0] <= side[1])
    return _next_range(Position(lower, upper, position.order, pending=(*position.pending, *sides)))


def _next_range(position: Position) -> Position:
    position = replace(position, edge_ids=frozenset(), last_count=0)
    if position.pending:
        (lower, upper), rest = position.pending[-1], position.pending[:-1]
        return replace(position, lower_ms=lower, upper_ms=upper, pending=rest)
    return replace(position, upper_ms=position.lower_ms - 1)
