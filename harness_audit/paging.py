"""Paging by time: which range to ask Harness for next, and what a page means. Pure: no I/O.

Harness's code sorts `list` by timestamp alone, so events sharing a millisecond come back in
any order; its total count is read from a secondary and can lag; and nothing says what a
listV2 page token is. Paging by offset or token can therefore skip or repeat events. Paging
by time cannot:

- Ask for the first page of ``[lower, upper]`` (both inclusive).
- Newest first: ``upper`` drops to the oldest timestamp on the page, and the ids taken at
  that millisecond (the *edge*) are carried, so re-reading it writes nothing twice. Oldest
  first: ``lower`` moves up instead.
- A page with fewer than PAGE_SIZE events that does not say there is more ends the range.
- A full page whose events all share one millisecond cannot move the edge: that
  millisecond (a *burst*, e.g. a role granted to 200 users at once) is read alone, page by
  page with the endpoint's own cursor, in passes until a pass brings no new id.

An order is learned from the first page with two distinct timestamps. Until then a burst
strictly inside the range leaves both sides of it to read, so the other side is kept in
``pending``. A page in neither order cannot be paged safely and raises PagingInconsistent.
"""

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from harness_audit.listing import FIRST_PAGE, Page, PageCursor, event_identity

NEWEST_FIRST = "newest_first"
OLDEST_FIRST = "oldest_first"
ORDERS = (NEWEST_FIRST, OLDEST_FIRST)
MAX_BURST_PASSES = 5

NOT_AN_OBJECT = "not_an_object"
NO_TIMESTAMP = "no_timestamp"
OUT_OF_RANGE = "out_of_range"
REPEATED_IN_PAGE = "repeated_in_page"


class PagingInconsistent(ValueError):
    """A page that time-driven paging cannot trust: nothing from it may be written."""


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
    # Not saved in the checkpoint: a resumed run restarts the pass, which is safe.
    burst_cursor: PageCursor = FIRST_PAGE
    pending: tuple[tuple[int, int], ...] = ()

    @property
    def done(self) -> bool:
        return self.burst_ms is None and self.lower_ms > self.upper_ms and not self.pending

    def request(self) -> tuple[int, int, PageCursor]:
        """(start, end, cursor) of the next request."""
        if self.burst_ms is not None:
            return self.burst_ms, self.burst_ms, self.burst_cursor
        return self.lower_ms, self.upper_ms, FIRST_PAGE

    def edge_ms(self) -> int:
        return self.lower_ms if self.order == OLDEST_FIRST else self.upper_ms


@dataclass(frozen=True)
class Taken:
    event: dict
    audit_id: str
    timestamp: int


@dataclass(frozen=True)
class Burst:
    """A millisecond read alone: for the WARNING that names it."""

    ms: int
    events: int
    passes: int
    settled: bool  # the last pass brought no new id


@dataclass(frozen=True)
class Step:
    """What one page brings, and where paging stands after it."""

    events: list[Taken]  # new to this window's paging, in page order
    repeats: int  # events already taken at the edge, or twice in this page
    rejected: dict[str, int]  # items not written, by reason
    rejected_sample: str | None  # one rejected item's auditId (or a description), for the log
    before: Position  # the position the page answered, with any order the page taught
    position: Position
    burst_done: Burst | None = None
    _direction: str | None = field(default=None, repr=False)

    def position_after(self, count: int) -> Position:
        """The position once the first ``count`` of ``events`` are delivered (a part that
        ends inside this page is checkpointed here)."""
        taken = self.events[:count]
        before = self.before
        if before.burst_ms is not None or self._direction is None:
            ms = before.burst_ms if before.burst_ms is not None else self.position.burst_ms
            return _burst_position(before, ms, taken, keep_pass=before.burst_ms is not None)
        return _move_edge(before, self._direction, taken)


def read_page(position: Position, page: Page) -> Step:
    """Interpret ``page``, the answer to ``position.request()``."""
    start, end, _ = position.request()
    in_range, rejected, sample = _screen(page.items, start, end)
    doubled = rejected.pop(REPEATED_IN_PAGE, 0)
    if position.burst_ms is not None:
        return _burst_page(position, page, in_range, rejected, sample, doubled)
    direction = _page_order(in_range)
    if position.order and direction and direction != position.order:
        raise PagingInconsistent(
            f"a page came {direction.replace('_', ' ')} after pages that came "
            f"{position.order.replace('_', ' ')}"
        )
    order = position.order or direction
    distinct = {taken.timestamp for taken in in_range}
    if page.has_more and len(distinct) <= 1:
        if not distinct:
            raise PagingInconsistent(
                f"a full page held no event stamped inside the range asked for "
                f"[{start}, {end}] ({sum(rejected.values())} items outside it)"
            )
        # Time cannot move past this millisecond: read it alone.
        (ms,) = distinct
        learned = replace(position, order=order)
        edge = position.edge_ids if ms == learned.edge_ms() else frozenset()
        new, repeats = _split_new(in_range, edge, doubled)
        after = _burst_position(learned, ms, new, keep_pass=False)
        return Step(new, repeats, rejected, sample, learned, after, None, None)
    moving = order or NEWEST_FIRST
    new, repeats = _split_new(in_range, position.edge_ids, doubled)
    learned = replace(position, order=order)
    after = _move_edge(learned, moving, new) if page.has_more else _next_range(learned)
    return Step(new, repeats, rejected, sample, learned, after, None, moving)


def _screen(
    items: Iterable, start: int, end: int
) -> tuple[list[Taken], dict[str, int], str | None]:
    """The page's events stamped inside ``[start, end]``, each id once; the rest counted by
    reason. A second copy of an id in one page says nothing new, and must not be mistaken
    for a break in the page's order."""
    in_range: list[Taken] = []
    seen: set[str] = set()
    rejected: dict[str, int] = {}
    sample = None
    for item in items:
        if not isinstance(item, dict):
            reason, description = NOT_AN_OBJECT, f"a JSON {type(item).__name__}"
        else:
            timestamp = item.get("timestamp")
            audit_id, _ = event_identity(item, fallback_ms=0)
            if type(timestamp) is not int:
                reason, description = NO_TIMESTAMP, audit_id
            elif audit_id in seen:
                reason, description = REPEATED_IN_PAGE, audit_id
            elif start <= timestamp <= end:
                seen.add(audit_id)
                in_range.append(Taken(item, audit_id, timestamp))
                continue
            else:
                reason, description = OUT_OF_RANGE, audit_id
        rejected[reason] = rejected.get(reason, 0) + 1
        sample = sample or description
    return in_range, rejected, sample


def _page_order(in_range: list[Taken]) -> str | None:
    """The page's order, None when one timestamp (or none) cannot tell."""
    stamps = [taken.timestamp for taken in in_range]
    pairs = list(itertools.pairwise(stamps))
    newest_first = all(a >= b for a, b in pairs)
    oldest_first = all(a <= b for a, b in pairs)
    if newest_first and oldest_first:
        return None
    if newest_first:
        return NEWEST_FIRST
    if oldest_first:
        return OLDEST_FIRST
    raise PagingInconsistent(
        "a page came in neither timestamp order (newest first nor oldest first), so paging "
        "by time cannot tell what it has read"
    )


def _split_new(
    in_range: list[Taken], edge_ids: frozenset[str], doubled: int = 0
) -> tuple[list[Taken], int]:
    seen = set(edge_ids)
    new: list[Taken] = []
    for taken in in_range:
        if taken.audit_id in seen:
            continue
        seen.add(taken.audit_id)
        new.append(taken)
    return new, len(in_range) - len(new) + doubled


def _move_edge(position: Position, direction: str, taken: list[Taken]) -> Position:
    edge_ms = position.lower_ms if direction == OLDEST_FIRST else position.upper_ms
    edge_ids = set(position.edge_ids)
    for item in taken:
        if item.timestamp != edge_ms:
            edge_ms, edge_ids = item.timestamp, set()
        edge_ids.add(item.audit_id)
    if direction == OLDEST_FIRST:
        return replace(position, lower_ms=edge_ms, edge_ids=frozenset(edge_ids))
    return replace(position, upper_ms=edge_ms, edge_ids=frozenset(edge_ids))


def _burst_position(position: Position, ms: int, taken: list[Taken], *, keep_pass: bool):
    base = position.edge_ids if ms == position.burst_ms or ms == position.edge_ms() else ()
    edge_ids = frozenset(base).union(item.audit_id for item in taken)
    if keep_pass:
        return replace(position, edge_ids=edge_ids, burst_cursor=FIRST_PAGE)
    return replace(
        position,
        edge_ids=edge_ids,
        burst_ms=ms,
        burst_pass=1,
        burst_new=False,
        burst_cursor=FIRST_PAGE,
    )


def _burst_page(position, page, in_range, rejected, sample, doubled) -> Step:
    new, repeats = _split_new(in_range, position.edge_ids, doubled)
    edge_ids = position.edge_ids.union(taken.audit_id for taken in new)
    burst_new = position.burst_new or bool(new)
    if page.has_more and page.next_cursor is not None:
        after = replace(
            position, edge_ids=edge_ids, burst_new=burst_new, burst_cursor=page.next_cursor
        )
        return Step(new, repeats, rejected, sample, position, after)
    if burst_new and position.burst_pass < MAX_BURST_PASSES:
        after = replace(
            position,
            edge_ids=edge_ids,
            burst_pass=position.burst_pass + 1,
            burst_new=False,
            burst_cursor=FIRST_PAGE,
        )
        return Step(new, repeats, rejected, sample, position, after)
    done = Burst(position.burst_ms, len(edge_ids), position.burst_pass, settled=not burst_new)
    return Step(new, repeats, rejected, sample, position, _after_burst(position), done)


def _after_burst(position: Position) -> Position:
    """The range left once the burst's millisecond is read in full."""
    ms, lower, upper = position.burst_ms, position.lower_ms, position.upper_ms
    base = replace(position, edge_ids=frozenset(), burst_ms=None, burst_pass=1, burst_new=False)
    base = replace(base, burst_cursor=FIRST_PAGE)
    if position.order == NEWEST_FIRST or (position.order is None and ms == upper):
        return _or_pending(replace(base, upper_ms=ms - 1))
    if position.order == OLDEST_FIRST or ms == lower:
        return _or_pending(replace(base, lower_ms=ms + 1))
    # Order unknown and the burst strictly inside: one side is empty, but which one is not
    # known, so both are read.
    return replace(base, lower_ms=ms + 1, pending=(*position.pending, (lower, ms - 1)))


def _or_pending(position: Position) -> Position:
    """A range the burst emptied gives way to a side still pending: asking for it would
    send a start after its end, which Harness refuses with a 400."""
    if position.lower_ms > position.upper_ms and position.pending:
        return _next_range(position)
    return position


def _next_range(position: Position) -> Position:
    if position.pending:
        (lower, upper), rest = position.pending[-1], position.pending[:-1]
        return replace(position, lower_ms=lower, upper_ms=upper, edge_ids=frozenset(), pending=rest)
    return replace(position, upper_ms=position.lower_ms - 1, edge_ids=frozenset())
