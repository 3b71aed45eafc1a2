"""Write README.md's results table (between the results-table markers) from the committed runs.

One row per dataset and variant (the issue-17 diagnostic variants are left to docs/results.md): AP and AP50, mean ± std over seeds, the same numbers as the tables
of docs/results.md (both come from docs/results/runs/ through experiments/results_doc.py).

    python experiments/readme_table.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.results_doc import collect, final_metrics, format_cell, ordered_datasets  # noqa: E402
from experiments.variants import VARIANTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def render(results_dir: Path) -> str:
    """Markdown table: dataset, model, seeds finished, AP and AP50 (mean ± std), minutes per run."""
    lines = ["| Dataset | Model | seeds | AP | AP50 | min/run |", "|---|---|---:|---:|---:|---:|"]
    for root in ordered_datasets(results_dir):
        grid = _grid(root)
        max_iter = int(grid.get("max_iter", 0))
        variants = [v for v in VARIANTS if (root / v.name).is_dir() and not v.diagnostic]
        seeds = sorted({int(p.name[4:]) for v in variants for p in (root / v.name).glob("seed*")
                        if final_metrics(p, max_iter) is not None})
        rows, _ = collect(variants, seeds, root, max_iter)
        for row in rows:
            if not row.metrics:
                continue
            minutes = [row.wall_s[s] / 60 for s in row.metrics if s in row.wall_s]
            wall = f"{sum(minutes) / len(minutes):.1f}" if minutes else "-"
            lines.append(f"| {root.name} | {row.variant.label} | {len(row.metrics)} | "
                         f"{format_cell(row.summary('AP'), len(row.metrics))} | "
                         f"{format_cell(row.summary('AP50'), len(row.metrics))} | {wall} |")
    return "\n".join(lines)


def _grid(root: Path) -> dict:
    try:
        return json.loads((root / "grid.json").read_text())
    except (OSError, ValueError):
        return {}


def main() -> None:
    table = render(ROOT / "docs" / "results" / "runs")
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    readme_path.write_text(f"{before}{START}\n{table}\n{END}{after}")


if __name__ == "__main__":
    main()
