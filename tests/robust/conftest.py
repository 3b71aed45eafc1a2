"""Fixtures of the robustness tests (issue 11): the tool tests' tiny checkpoint, a one-line check."""

from __future__ import annotations

import pytest

from tests.reports.conftest import tiny_run  # noqa: F401  (a fixture, shared with the tool tests)


@pytest.fixture
def run_cli(capsys):
    """``run_cli(args) -> (exit code, stdout, stderr)`` of ``dynatss ARGS`` in this process."""
    from dynatss.cli.main import main

    def run(args: list[str]) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def one_line_error(err: str, *names: str) -> str:
    """The stderr of a failed command: exactly one line, no traceback, naming every ``names``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]
