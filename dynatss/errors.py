"""The one exception type users see.

Every failure caused by user input (a bad config key, a corrupt image, a truncated checkpoint)
raises :class:`DynatssError` with a message that names the file and the problem. The CLI prints
that message on one line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class DynatssError(Exception):
    """A user-facing error: its message is complete and fits on one line."""
