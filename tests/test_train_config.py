"""TrainConfig: hyp yaml and CLI precedence, clear errors for bad settings, save/load round trip."""

from __future__ import annotations

import pytest
import yaml

from mnv3det.train.config import TrainConfig, apply_overrides, load_hyp, save_config
from mnv3det.train.optim import Warmup, accumulate_steps, build_optimizer, lr_lambda, parameter_groups
from mnv3det.errors import UserError


def test_hyp_presets_load_and_scratch_equals_defaults():
    assert apply_overrides(TrainConfig(), load_hyp("hyp.scratch"), "hyp.scratch") == TrainConfig()
    small = apply_overrides(TrainConfig(), load_hyp("hyp.small-data"), "hyp.small-data")
    assert small.nbs == 16 and small.min_warmup_iters == 0 and small.cos_lr


def test_precedence_defaults_then_hyp_then_cli(tmp_path):
    hyp = tmp_path / "h.yaml"
    hyp.write_text("lr0: 0.02\nepochs: 7\nmosaic: 0.5\n")
    cfg = apply_overrides(TrainConfig(), load_hyp(hyp), "hyp")
    cfg = apply_overrides(cfg, {"epochs": 3}, "cli")
    assert (cfg.lr0, cfg.epochs, cfg.mosaic, cfg.batch) == (0.02, 3, 0.5, 16)
    assert cfg.augment_hyp()["mosaic"] == 0.5


@pytest.mark.parametrize(
    "values, words",
    [
        ({"lr_0": 0.1}, ["unknown setting", "lr_0"]),
        ({"epochs": "ten"}, ["epochs", "int"]),
        ({"imgsz": 100}, ["multiple of 32"]),
        ({"optimizer": "lion"}, ["SGD or AdamW"]),
        ({"cos_lr": "yes"}, ["cos_lr", "bool"]),
    ],
)
def test_bad_settings_name_the_source_and_field(tmp_path, values, words):
    hyp = tmp_path / "bad.yaml"
    hyp.write_text(yaml.safe_dump(values))
    with pytest.raises(UserError) as err:
        apply_overrides(TrainConfig(), load_hyp(hyp), f"--hyp {hyp}")
    assert str(hyp) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_hyp_not_a_mapping_is_a_user_error(tmp_path):
    hyp = tmp_path / "list.yaml"
    hyp.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        load_hyp(hyp)


def test_saved_config_round_trips(tmp_path):
    cfg = TrainConfig(epochs=5, data="x.yaml", max_images=10, cpu_bf16=True)
    path = save_config(cfg, tmp_path / "config.yaml")
    assert TrainConfig.from_dict(yaml.safe_load(path.read_text())) == cfg


def test_param_groups_and_optimizer():
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1))
    groups = parameter_groups(model)
    assert [len(groups[k]) for k in ("decay", "norm", "bias")] == [2, 1, 2]  # BN bias counts as bias
    opt = build_optimizer(model, "SGD", 0.01, 0.937, 5e-4)
    by_name = {g["group"]: g for g in opt.param_groups}
    assert by_name["decay"]["weight_decay"] == 5e-4 and by_name["norm"]["weight_decay"] == 0.0
    assert by_name["bias"]["weight_decay"] == 0.0 and opt.defaults["nesterov"]


def test_accumulation_schedule_and_warmup():
    assert accumulate_steps(16, 64) == 4 and accumulate_steps(128, 64) == 1
    lf = lr_lambda(10, 0.01, cosine=False)
    assert lf(0) == pytest.approx(1.0) and lf(9) == pytest.approx(0.01)
    cos = lr_lambda(10, 0.01, cosine=True)
    assert cos(0) == pytest.approx(1.0) and cos(10) == pytest.approx(0.01) and 0.01 < cos(5) < 1.0
    from torch import nn

    model = nn.Conv2d(3, 4, 1)
    opt = build_optimizer(model, "SGD", 0.01, 0.937, 5e-4)
    for g in opt.param_groups:
        g["initial_lr"] = 0.01
    warm = Warmup(iters=100, nbs=64, batch=16, momentum=0.937, warmup_momentum=0.8, warmup_bias_lr=0.1, lf=lf)
    assert warm.apply(opt, 0, 0) == 1  # accumulation ramps up from 1
    bias = next(g for g in opt.param_groups if g["group"] == "bias")
    weights = next(g for g in opt.param_groups if g["group"] == "decay")
    assert bias["lr"] == pytest.approx(0.1) and weights["lr"] == 0.0 and weights["momentum"] == pytest.approx(0.8)
    assert warm.apply(opt, 99, 0) == 4  # ... to nbs / batch
    assert warm.apply(opt, 100, 1) is None  # warmup over


@pytest.mark.parametrize(
    "name, value, shown",
    [
        ("lr0", float("inf"), "(0, 1]"),
        ("hsv_h", float("nan"), "[0, 1]"),
        ("fliplr", -1, "[0, 1]"),
        ("mosaic", 2, "[0, 1]"),
        ("momentum", 5, "[0, 1)"),
        ("weight_decay", float("-inf"), "[0, 1)"),
        ("grad_clip", 0, "> 0"),
        ("box", -0.5, ">= 0"),
        ("seed", -1, "[0, 4294967295]"),
    ],
)
def test_numeric_settings_must_be_finite_and_in_range(tmp_path, name, value, shown):
    hyp = tmp_path / "bad.yaml"
    hyp.write_text(f"{name}: {value!r}\n".replace("inf", ".inf").replace("nan", ".nan"))
    with pytest.raises(UserError) as err:
        apply_overrides(TrainConfig(), load_hyp(hyp), f"--hyp {hyp}")
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert f"--hyp {hyp}: {name} must be a finite number in {shown}" in message


def test_every_numeric_field_has_a_range_and_the_defaults_and_presets_are_in_it():
    from dataclasses import fields

    from mnv3det.train.config import RANGES

    numeric = {f.name for f in fields(TrainConfig) if any(t in str(f.type) for t in ("int", "float"))}
    assert numeric == set(RANGES)
    for preset in ("hyp.scratch", "hyp.small-data", "hyp.demo", "hyp.pretrain"):
        apply_overrides(TrainConfig(), load_hyp(preset), preset)  # raises when a shipped value is out of range


def test_fit_checks_a_config_built_directly():
    from mnv3det.train.trainer import fit

    with pytest.raises(UserError, match="lr0 must be a finite number"):
        fit(TrainConfig(lr0=float("inf")))


def test_config_table_prints_values_with_markup_as_they_are():
    import io

    from rich.console import Console

    from mnv3det.train.config import config_table

    out = io.StringIO()
    Console(file=out, width=300).print(config_table(TrainConfig(name="run [/]1", project="[bold]p")))
    assert "'run [/]1'" in out.getvalue() and "'[bold]p'" in out.getvalue()
