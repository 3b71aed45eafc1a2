"""The one exception type users see.

Every failure caused by user input (a bad config key, a corrupt image, a truncated checkpoint)
raises :class:`DynatssError` with a message that names the file and the problem. The CLI prints
that message on one line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class DynatssError(Exception):
    """A user-facing error: its message is complete and fits on one line."""


class Terminated(BaseException):
    """SIGTERM (a scheduler's stop, ``kill``), raised like KeyboardInterrupt is for SIGINT, so that the
    run's clean-up happens (its lock released, half-written temporaries removed; the last checkpoint
    stays) and the command line says in one line why it stopped (issue 18)."""

    SIGNAL = signal.SIGTERM


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def raise_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (the command line installs it;
    a library does not take over its host's signals)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


# Held back while a file is written: Ctrl-C and a scheduler's stop.
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver each to its own handler.

    For bounded writes: a stop that lands inside torch.save made torch's zip writer fail in its own
    RuntimeError ("unexpected pos"), which hid the stop behind a traceback; deferred, the file is
    written whole and the stop still comes. Outside the main thread, or for a handler not set from
    Python, it defers nothing.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    handlers = {signum: signal.getsignal(signum) for signum in DEFERRED_SIGNALS if in_main_thread}
    handlers = {signum: handler for signum, handler in handlers.items() if handler is not None}
    received: list[int] = []
    for signum in handlers:
        signal.signal(signum, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)
