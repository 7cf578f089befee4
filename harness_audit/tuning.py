"""Process settings for a batch of millions of short-lived objects on two threads.

Each was measured with ``make bench`` (see the README's "Speed and memory").
"""

import ctypes
import gc
import sys


def tune_process() -> None:
    # Everything imported so far lives as long as the instance: keep it out of the
    # collector's way. A run allocates millions of short-lived objects (decoded events);
    # collecting the young generation every 50,000 allocations instead of 700 saved a sixth
    # of the run's CPU.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    # The page fetcher and the run's thread share the GIL: a response that arrives while a
    # page is being decoded waits for the next switch; 0.5 ms instead of 5 ms keeps it short.
    sys.setswitchinterval(0.0005)
    _return_large_buffers_to_the_os()


def _return_large_buffers_to_the_os() -> None:
    """Parts are buffers of up to 8 MB. Once glibc frees one that it had mmap'ed, it raises
    its mmap threshold, so the next ones come from the heap, which does not shrink: each part
    then adds to the resident size. A fixed threshold keeps them mmap'ed and returned when
    freed (+38 MB of RSS at 200,000 events without it, +23 MB with it)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
