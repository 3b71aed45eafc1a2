"""Copy the results table of docs/results.md into README.md (between the results-table markers)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def main() -> None:
    results = (ROOT / "docs" / "results.md").read_text()
    table = re.search(r"^\| Model \| seeds \|.*?(?=\n\n)", results, flags=re.S | re.M)
    if table is None:
        raise SystemExit("docs/results.md has no results table")
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    readme_path.write_text(f"{before}{START}\n{table.group(0)}\n{END}{after}")


if __name__ == "__main__":
    main()
