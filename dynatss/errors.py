"""The one exception type users see.

Every failure caused by user input (a bad config key, a corrupt image, a truncated checkpoint)
raises :class:`DynatssError` with a message that names the file and the problem. The CLI prints
that message on one line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

import signal
import threading
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
