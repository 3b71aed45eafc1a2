"""Config values (issue 11): any float notation, ranges checked at load time naming the key, suggestions."""

from __future__ import annotations

import dataclasses

import pytest

from dynatss.config import Config, load_config
from dynatss.config_values import VALUE_RANGES
from dynatss.errors import DynatssError
from tests.robust.conftest import one_line_error


@pytest.mark.parametrize("text", ["1e-4", "1E-4", "1.0e-4", ".0001", "0.0001", "1e-04"])
def test_every_float_notation_is_accepted_in_yaml_and_overrides(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(f"solver:\n  base_lr: {text}\n  weight_decay: {text}\n")
    config = load_config(path)
    assert config.solver.base_lr == pytest.approx(1e-4) and config.solver.weight_decay == pytest.approx(1e-4)
    assert load_config(None, [f"solver.base_lr={text}"]).solver.base_lr == pytest.approx(1e-4)


def test_integers_may_be_written_as_integral_floats():
    assert load_config(None, ["solver.max_iter=9e4", "solver.steps=[6e4, 8e4]"]).solver.steps == [60000, 80000]
    with pytest.raises(DynatssError, match=r"solver.max_iter: expected an integer, got 1.5"):
        load_config(None, ["solver.max_iter=1.5"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("solver.base_lr=-0.01", "solver.base_lr = -0.01: must be > 0"),
        ("solver.momentum=-0.9", "solver.momentum = -0.9: must be in [0, 1)"),
        ("data.min_sizes=[0]", "data.min_sizes = [0]: every value must be >= 1"),
        ("data.min_sizes=[]", "data.min_sizes = []: needs at least one value"),
        ("data.size_divisibility=0", "data.size_divisibility = 0: must be >= 1"),
        ("data.num_workers=-1", "data.num_workers = -1: must be >= 0"),
        ("data.max_image_pixels=0", "data.max_image_pixels = 0: must be >= 1"),
        ("inference.nms_threshold=1.5", "inference.nms_threshold = 1.5: must be in [0, 1]"),
        ("model.box_coder_weights=[1, 1]", "model.box_coder_weights = [1.0, 1.0]: needs exactly 4 values"),
        ("solver.base_lr=nan", "solver.base_lr: expected a finite number, got nan"),
        ("train.seed=-1", "train.seed = -1: must be in [0, 4294967295]"),
        ("train.device=tpu", "train.device = 'tpu': must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'gpu'"),
        ("train.output_dir=", "train.output_dir is empty"),
    ],
)
def test_values_out_of_range_fail_at_load_time_naming_the_key(override, message):
    with pytest.raises(DynatssError) as error:
        load_config(None, [override])
    assert str(error.value) == message


def test_a_range_error_in_a_file_names_the_key_and_the_value(tmp_path, run_cli):
    path = tmp_path / "bad.yaml"
    path.write_text("solver: {base_lr: -1e-2}\n")
    code, _, err = run_cli(["train", path])
    assert code == 2
    one_line_error(err, "solver.base_lr", "-0.01")


def test_every_ranged_key_exists():
    config = Config()
    for key in VALUE_RANGES:
        section, name = key.split(".")
        assert name in {f.name for f in dataclasses.fields(getattr(config, section))}, key


def test_the_defaults_and_the_shipped_configs_are_in_range():
    from tests.engine.test_configs import CONFIG_FILES

    for config in [load_config(None), *map(load_config, CONFIG_FILES)]:
        for key, allowed in VALUE_RANGES.items():
            section, name = key.split(".")
            value = getattr(getattr(config, section), name)
            assert value == [] or allowed.problem(value) is None, (key, value)
    # ... and a value just outside a range is refused (the ranges are not all open).
    with pytest.raises(DynatssError, match="inference.nms_threshold = 1.5: must be in"):
        load_config(None, ["inference.nms_threshold=1.5"])


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("solver.lr=0.01", "solver.lr' (did you mean 'base_lr'?)"),
        ("solver.base_lrr=0.01", "(did you mean 'base_lr'?)"),
        ("solver.seed=1", "(did you mean 'train.seed'?)"),
        ("lr=0.01", "(did you mean 'solver.base_lr'?)"),
        ("solver.batch=8", "(did you mean 'batch_size'?)"),
        ("assign.mode=dynamc", "(did you mean 'dynamic'?)"),
    ],
)
def test_misspelt_keys_get_a_suggestion(override, suggestion):
    with pytest.raises(DynatssError) as error:
        load_config(None, [override])
    assert suggestion in str(error.value)


def test_a_malformed_override_value_is_one_line():
    with pytest.raises(DynatssError, match=r"override 'model.anchor_scales=\[1,': the value is not valid YAML"):
        load_config(None, ["model.anchor_scales=[1,"])


def test_a_renamed_key_is_read_under_its_new_name():
    """model.box_weights (runs saved before issue 19) is model.box_coder_weights now."""
    from dynatss.config import config_from_dict, config_to_dict

    saved = config_to_dict(Config())
    del saved["model"]["box_coder_weights"]
    saved["model"]["box_weights"] = [1.0, 2.0, 3.0, 4.0]
    assert config_from_dict(saved, "old run").model.box_coder_weights == [1.0, 2.0, 3.0, 4.0]
    assert load_config(None, ["model.box_weights=[5, 5, 5, 5]"]).model.box_coder_weights == [5.0] * 4
