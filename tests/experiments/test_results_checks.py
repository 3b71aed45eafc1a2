"""The issue's bars are computed from the runs: each check must be able to fail."""

from __future__ import annotations

from experiments.results_checks import (
    FULL,
    at_least,
    convergence,
    dataset_checks,
    no_class_behind,
    paired_reading,
    render_checks,
)
from experiments.results_doc import Row, render_per_class
from experiments.variants import VARIANTS_BY_NAME


def _row(name: str, aps: list[float], per_class: list[dict[str, float]] | None = None) -> Row:
    row = Row(VARIANTS_BY_NAME[name], list(range(len(aps))))
    for seed, ap in enumerate(aps):
        row.metrics[seed] = {"AP": ap / 100, "AP50": 0.5}
        row.per_class[seed] = per_class[seed] if per_class else {}
    return row


def test_convergence_fails_on_a_large_std_and_on_one_bad_seed():
    assert convergence(_row("atss", [50.0, 51.0, 52.0])).met
    # std 2.5 > 2
    assert not convergence(_row("atss", [50.0, 52.5, 55.0])).met
    # Five seeds: std 1.8 <= 2, but the last seed is 3.2 below the mean.
    wide = convergence(_row("atss", [56.0, 56.0, 56.0, 56.0, 52.0]))
    assert not wide.met and "std 1.8" in wide.measured and "3.2 below" in wide.measured
    assert convergence(_row("atss", [50.0])) is None  # one seed says nothing about convergence


def test_full_method_bars_use_means_and_the_fcos_margin():
    rows = {"ciou_qfl_iou": _row("ciou_qfl_iou", [54.0, 55.0]), "atss": _row("atss", [54.0, 56.0]),
            "tv_fcos": _row("tv_fcos", [51.0, 52.0])}
    assert not at_least(rows, "ciou_qfl_iou", "atss").met  # 54.5 < 55.0
    fcos = at_least(rows, "ciou_qfl_iou", "tv_fcos", 3.0)
    assert fcos.met and "+3.0" in fcos.measured  # 54.5 vs 51.5: exactly the margin
    rows["tv_fcos"] = _row("tv_fcos", [51.6, 51.6])
    assert not at_least(rows, "ciou_qfl_iou", "tv_fcos", 3.0).met
    assert at_least(rows, "ciou_qfl_iou", "gflv2") is None  # not run: no check
    rows["atss"] = _row("atss", [54.0, 56.0, 57.0])  # means over 2 and 3 seeds: the counts are named
    assert at_least(rows, "ciou_qfl_iou", "atss").measured == "54.5 (2 seeds) vs 55.7 (3 seeds) (-1.2)"


def test_paired_reading_places_the_bar_against_the_interval():
    """Differences +1.0, +0.5, +1.0: mean 0.83, std 0.29, half-width 4.303 x 0.29 / sqrt(3) = 0.72."""
    row, baseline = _row("ciou_qfl_iou", [55.0, 56.0, 57.0]), _row("atss", [54.0, 55.5, 56.0])
    assert paired_reading(row, baseline, 0.0) == "+0.8 (+0.1, +1.6), 3 seeds: above the bar beyond the noise"
    assert paired_reading(row, baseline, 1.0).endswith("within the noise of the bar")
    assert paired_reading(row, baseline, 3.0).endswith("below the bar beyond the noise")
    assert paired_reading(row, _row("atss", [54.0]), 0.0) == ""  # one shared seed: no interval
    check = at_least({"ciou_qfl_iou": row, "atss": baseline}, "ciou_qfl_iou", "atss")
    assert check.met and check.paired.startswith("+0.8 (+0.1, +1.6)")
    assert render_checks([check]).splitlines()[-1].endswith("| yes | " + check.paired + " |")


def test_vfnet_may_trail_atss_by_three():
    rows = {"vfnet": _row("vfnet", [52.0]), "atss": _row("atss", [55.0])}
    assert at_least(rows, "vfnet", "atss", -3.0).met
    rows["vfnet"] = _row("vfnet", [51.9])
    assert not at_least(rows, "vfnet", "atss", -3.0).met


def test_dataset_checks_and_table_list_only_what_was_run():
    rows = [_row("atss", [56.0, 55.0, 57.0]), _row(FULL, [54.0, 54.5, 55.0]),
            _row("tv_fcos", [50.0, 51.0, 52.0])]
    checks = dataset_checks(rows)
    assert len(checks) == 5  # three convergence checks, full >= ATSS, full >= FCOS + 3
    assert [c.met for c in checks] == [True, True, True, False, True]
    table = render_checks(checks)
    assert table.count("\n") == 7 and "**no**" in table
    # With ATSS under the recipe's box loss as well: its convergence and the full method against it.
    checks = dataset_checks([*rows, _row("atss_uniform", [53.0, 54.0, 55.0])])
    assert len(checks) == 7 and [c.met for c in checks] == [True, True, True, True, False, True, True]
    assert render_checks([]) == ""


def test_table_v_pairs_are_checked_under_each_box_weighting():
    rows = [_row("vfnet", [56.0, 57.0]), _row("vfnet_ciou", [55.0, 56.0]),
            _row("vfnet_uniform", [55.0, 56.0]), _row("vfnet_ciou_uniform", [55.5, 56.0])]
    pairs = [check for check in dataset_checks(rows) if ">=" in check.bar]
    assert [(check.measured.split(" (")[-1], check.met) for check in pairs] == [("-1.0)", False), ("+0.2)", True)]
    assert "VFNet+CIoU, uniform box weights >= VFNet, uniform box weights" == pairs[1].bar


def test_table_v_pairs_with_the_recipes_cap_compare_with_the_head_under_atss_assignment():
    rows = [_row("gflv2_uniform", [55.0, 56.0]), _row("gflv2_ciou_uniform_cap50", [54.0, 56.4]),
            _row("vfnet_uniform", [57.0, 57.0]), _row("vfnet_ciou_uniform_cap50", [57.5, 57.0])]
    pairs = {check.bar: check for check in dataset_checks(rows) if ">=" in check.bar}
    gfl = pairs[f"{VARIANTS_BY_NAME['gflv2_ciou_uniform_cap50'].label} >= {VARIANTS_BY_NAME['gflv2_uniform'].label}"]
    vfnet = pairs[f"{VARIANTS_BY_NAME['vfnet_ciou_uniform_cap50'].label} >= {VARIANTS_BY_NAME['vfnet_uniform'].label}"]
    assert (gfl.measured, gfl.met) == ("55.2 vs 55.5 (-0.3)", False)
    assert (vfnet.measured, vfnet.met) == ("57.2 vs 57.0 (+0.2)", True)


def test_no_class_behind_compares_class_means_over_seeds():
    classes = [{"Platelets": 0.44, "RBC": 0.57}, {"Platelets": 0.46, "RBC": 0.57}]  # ATSS: 45.0, 57.0
    rows = {"atss": _row("atss", [55.0, 56.0], classes)}
    rows["ciou_qfl_iou"] = _row("ciou_qfl_iou", [55.0, 56.0], [{"Platelets": 0.43, "RBC": 0.60},
                                                               {"Platelets": 0.43, "RBC": 0.60}])
    check = no_class_behind(rows, "ciou_qfl_iou", "atss", 2.0)
    assert check.met and "Platelets: 43.0 vs 45.0 (-2.0)" in check.measured  # exactly 2 behind is met
    rows["ciou_qfl_iou"].per_class[1] = {"Platelets": 0.42, "RBC": 0.60, "WBC": -1.0}  # mean 42.5: 2.5 behind
    check = no_class_behind(rows, "ciou_qfl_iou", "atss", 2.0)
    assert not check.met and "(-2.5)" in check.measured
    assert no_class_behind({"atss": _row("atss", [50.0], [{"car": 0.5}]),
                            "ciou_qfl_iou": _row("ciou_qfl_iou", [50.0], [{"car": 0.4}])},
                           "ciou_qfl_iou", "atss", 2.0) is None  # one class: AP already says it


def test_per_class_table_averages_seeds_and_skips_single_class_data():
    rows = [_row("atss", [50.0, 52.0], [{"RBC": 0.6, "WBC": 0.8}, {"RBC": 0.7, "WBC": 0.8}])]
    table = render_per_class(rows)
    assert "| RBC | WBC |" in table and "65.0 ± 7.1" in table and "80.0 ± 0.0" in table
    assert render_per_class([_row("atss", [50.0], [{"car": 0.5}])]) == ""
