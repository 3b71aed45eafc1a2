"""Problems found while reading or checking a dataset: one line each, naming the file and object.

Readers never raise on bad annotations; they drop or clean the offending image/object and record a
:class:`Problem`. ``dynatss data check`` prints them all; training prints a one-line summary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One problem: ``path`` is the file at fault (annotation or image), ``message`` says what."""

    path: Path
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}".replace("\n", " ")


def summarize_problems(problems: list[Problem]) -> str:
    """One line for logs, e.g. ``2 problems (2 errors, 0 warnings); first: error: a.xml: ...``."""
    if not problems:
        return "no problems"
    counts = Counter(p.severity for p in problems)
    first = next((p for p in problems if p.severity == "error"), problems[0])
    return (
        f"{_plural(len(problems), 'problem')} ({_plural(counts['error'], 'error')}, "
        f"{_plural(counts['warning'], 'warning')}; bad images/objects skipped); first: {first}"
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
