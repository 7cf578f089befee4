"""The run's time, and how it bounds each Cloud Storage call and the library's own retry."""

import pytest
from google.cloud.storage.retry import DEFAULT_RETRY

from devtools.fake_clock import FakeClock
from harness_audit.clock import Deadline
from harness_audit.gcs import call_options


@pytest.mark.parametrize(
    ("seconds", "attempt", "retrying"),
    [
        (10.0, 5.0, 5.0),  # the last attempt may start just before the retry gives up
        (300.0, 60.0, 240.0),  # one attempt never waits longer than the library's default
        (0.2, 0.5, 0.5),  # a run at its very end still gets an answer
        (-3.0, 0.5, 0.5),
    ],
)
def test_a_call_ends_within_the_seconds_it_is_given(seconds, attempt, retrying):
    options = call_options(seconds)
    assert options["timeout"] == attempt
    assert options["retry"].timeout == retrying


def test_without_a_deadline_the_library_defaults_apply():
    assert call_options(None) == {"retry": DEFAULT_RETRY}


@pytest.mark.parametrize(("budget", "reserve"), [(10, 5.0), (100, 10.0), (480, 30.0), (539, 30.0)])
def test_the_write_reserve(budget, reserve):
    assert Deadline.for_run(FakeClock(), budget).remaining() == budget - reserve


def test_paging_stops_before_the_end_and_the_release_keeps_the_last_half_of_the_reserve():
    clock = FakeClock()
    deadline = Deadline.for_run(clock, 10)
    assert deadline.remaining() == 5 and not deadline.expired()
    assert deadline.storage_seconds() == 7.5 and deadline.storage_seconds(release=True) == 10
    clock.advance(6)
    assert deadline.expired()
    assert deadline.storage_seconds() == 1.5 and deadline.storage_seconds(release=True) == 4
