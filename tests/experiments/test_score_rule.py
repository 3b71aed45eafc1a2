"""experiments/score_rule.py: the report averages each (variant, exponent) over its seeds."""

from __future__ import annotations

import json

from experiments.score_rule import report


def test_report_means_over_seeds(tmp_path):
    path = tmp_path / "rule.jsonl"
    lines = [
        {"variant": "full", "seed": "seed0", "exponent": 1.0, "metrics": {"AP": 0.50, "AP50": 0.8, "AP75": 0.5},
         "per_class": {"a": 0.40, "b": 0.60}},
        {"variant": "full", "seed": "seed1", "exponent": 1.0, "metrics": {"AP": 0.54, "AP50": 0.9, "AP75": 0.6},
         "per_class": {"a": 0.44, "b": 0.64}},
        {"variant": "full", "seed": "seed0", "exponent": 0.0, "metrics": {"AP": 0.30, "AP50": 0.7, "AP75": 0.2},
         "per_class": {"a": 0.10, "b": 0.50}},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    rows = report(path).splitlines()
    assert rows[0] == "| variant | exponent | seeds | AP | AP50 | AP75 | a | b |"
    assert rows[2] == "| full | 1 | 2 | 52.0 | 85.0 | 55.0 | 42.0 | 62.0 |"
    assert rows[3] == "| full | 0 | 1 | 30.0 | 70.0 | 20.0 | 10.0 | 50.0 |"
