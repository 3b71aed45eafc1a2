from pathlib import Path

import pytest
import yaml

from dynatss.config import config_to_dict, load_config
from dynatss.engine.build import build_criterion
from dynatss.errors import DynatssError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(CONFIG_DIR.rglob("*.yaml"))


def test_the_expected_configs_exist():
    names = {path.relative_to(CONFIG_DIR).as_posix() for path in CONFIG_FILES}
    assert {"atss_r50_fpn_1x_coco.yaml", "dynamic_atss_r50_fpn_1x_coco.yaml",
            "dynamic_atss_r101_fpn_2x_ms_coco.yaml", "bccd_mnv2_cpu.yaml", "demo.yaml"} <= names  # fmt: skip
    assert len([n for n in names if n.startswith("ablations/")]) >= 15


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_FILES])
def test_every_config_loads_the_values_it_states_and_builds_its_criterion(path):
    """Every value written in the file is the value loaded (none dropped or coerced to another), the
    schedule is consistent, and the head's criterion accepts the file's losses."""
    config = load_config(path)
    written = yaml.safe_load(path.read_text())
    for section, values in written.items():
        for key, value in values.items():
            loaded = getattr(getattr(config, section), key)
            assert loaded == value or (isinstance(value, str) and loaded == float(value)), (section, key, value, loaded)
    if config.solver.epochs is None:
        assert config.solver.max_iter > max(config.solver.steps, default=0) or config.solver.schedule == "cosine"
    assert config.train.output_dir.startswith("runs/")
    terms = build_criterion(config, model=None).terms
    assert type(terms).__name__ == {"atss": "ATSSTerms", "gfl": "GFLTerms", "vfnet": "VFNetTerms"}[config.model.head]


def test_ablation_configs_are_all_different_recipes():
    recipes = {}
    for path in sorted((CONFIG_DIR / "ablations").glob("*.yaml")):
        config = config_to_dict(load_config(path))
        del config["train"]
        recipes[path.stem] = repr(config)
    assert len(set(recipes.values())) == len(recipes)


def test_full_method_is_the_paper_recipe():
    config = load_config(CONFIG_DIR / "dynamic_atss_r50_fpn_1x_coco.yaml")
    assert (config.assign.mode, config.loss.classification, config.model.quality) == ("dynamic", "qfl", "iou")
    assert (config.solver.max_iter, config.solver.batch_size, config.solver.base_lr) == (90000, 16, 0.01)
    assert config.solver.steps == [60000, 80000] and config.data.min_sizes == [800]
    ablation = load_config(CONFIG_DIR / "ablations" / "ciou_qfl_iou.yaml")
    assert config_to_dict(ablation)["assign"] == config_to_dict(config)["assign"]


def test_unknown_key_in_a_file_suggests_the_right_one(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("solver:\n  base_rl: 0.1\n")
    with pytest.raises(DynatssError, match=r"typo.yaml.*solver.base_rl.*did you mean 'base_lr'"):
        load_config(path)


def test_overrides_apply_after_the_file_and_are_checked():
    config = load_config(CONFIG_DIR / "demo.yaml", ["solver.base_lr=0.5", "model.anchor_scales=[2, 3]"])
    assert config.solver.base_lr == 0.5 and config.model.anchor_scales == [2.0, 3.0]
    with pytest.raises(DynatssError, match="did you mean 'max_iter'"):
        load_config(CONFIG_DIR / "demo.yaml", ["solver.max_iters=10"])
    with pytest.raises(DynatssError, match="assign.mode"):
        load_config(None, ["assign.mode=bogus"])
