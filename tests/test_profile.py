"""`mnv3det profile` and mnv3det.deploy.profile: hand-computed MACs, separable-conv savings, CLI through CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.models import build_model
from mnv3det.deploy.profile import profile_model, row_costs, time_interleaved

ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]

# A tiny MobileNetV1-style graph: depthwise-separable convs down to /32, Detect on /8, /16, /32.
DWS_RECIPE = {
    "nc": 2,
    "anchors": ANCHORS,
    "backbone": [
        [-1, 1, "Conv", [16, 3, 2]],  # 0 /2
        [-1, 1, "DWSConv", [32, 3, 2]],  # 1 /4
        [-1, 1, "DWSConv", [64, 3, 2], "P3"],  # 2 /8
        [-1, 1, "DWSConv", [64, 3, 2], "P4"],  # 3 /16
        [-1, 1, "DWSConv", [128, 3, 2], "P5"],  # 4 /32
    ],
    "head": [[["P3", "P4", "P5"], 1, "Detect", ["nc", "anchors"]]],
}


def test_row_macs_match_hand_computed_conv_costs():
    model = build_model("yolov5n")
    rows = row_costs(model, imgsz=64)
    # row 0: Conv 6x6 stride 2, 3 -> 16 channels (64 x 0.25), output 32x32
    assert rows[0].out_shape == [1, 16, 32, 32]
    assert rows[0].macs == 6 * 6 * 3 * 16 * 32 * 32
    assert rows[0].flops == 2 * rows[0].macs
    # row 1: Conv 3x3 stride 2, 16 -> 32, output 16x16
    assert rows[1].macs == 3 * 3 * 16 * 32 * 16 * 16
    assert sum(r.params for r in rows) == 1_872_157


def test_depthwise_separable_saving_is_one_over_n_plus_one_over_k_squared():
    rows = row_costs(build_model(DWS_RECIPE), imgsz=64)
    dws = [r for r in rows if r.module == "DWSConv"]
    assert len(dws) == 4
    for r in dws:
        n = r.out_shape[1]
        # depthwise k^2*C_in*HW + pointwise C_in*N*HW, over a standard k^2*C_in*N*HW conv
        assert r.vs_std_conv == pytest.approx(1 / n + 1 / 9)
        assert r.separable_theory == pytest.approx(1 / n + 1 / 9)
    assert rows[0].vs_std_conv is None  # a plain Conv row has nothing to compare


def test_profile_model_totals_without_latency():
    prof = profile_model("mnv3-small", imgsz=64, nc=3, runs=0)
    assert prof.params == sum(p.numel() for p in build_model("mnv3-small", nc=3).parameters())
    assert prof.macs == sum(r.macs for r in prof.rows) > 0
    assert prof.gflops == pytest.approx(2 * prof.macs / 1e9)
    assert prof.eager_ms is None and prof.ort_ms is None
    block = prof.rows[4]  # MobileNet_Block [40, 96, 5, 2, True, True]: 24 -> 40 channels, 5x5, /16
    assert block.std_conv_macs == 5 * 5 * 24 * 40 * 4 * 4


def test_latency_runs_are_taken_in_blocks_in_turn_after_warmup():
    calls: list[str] = []
    medians = time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, runs=5, warmup=2, rounds=2
    )
    # warm-up, then blocks of 3 and 2 timed runs, each block after one untimed run
    assert calls == ["a", "a", "b", "b"] + ["a"] * 4 + ["b"] * 4 + ["a"] * 3 + ["b"] * 3
    assert set(medians) == {"a", "b"} and all(v >= 0 for v in medians.values())


runner = CliRunner()


def test_profile_cli_json_with_compare_is_pure_json():
    result = runner.invoke(
        app, ["profile", "--recipe", "yolov5n", "--imgsz", "64", "--runs", "2", "--threads", "1",
              "--compare", "mnv3-small", "--nc", "3", "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    main, other = data["profile"], data["compare"]
    assert main["recipe"] == "yolov5n" and other["recipe"] == "mnv3-small"
    assert main["nc"] == 3 and len(main["rows"]) == 25 and main["rows"][0]["flops"] == 2 * main["rows"][0]["macs"]
    assert main["eager_ms"] > 0
    assert (main["ort_ms"] or 0) > 0 or "skipped" in main["ort_note"]
    assert data["ratios"]["params"] == pytest.approx(main["params"] / other["params"], abs=1e-4)


def test_profile_cli_table():
    result = runner.invoke(app, ["profile", "--backbone", "large", "--imgsz", "64", "--runs", "0"])
    assert result.exit_code == 0, result.output
    assert "mnv3-large at 64x64" in result.stdout
    assert "MobileNet_Block" in result.stdout and "total" in result.stdout
    assert "FLOPs = 2 x MACs" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--recipe", "nope"], "recipe 'nope' not found"),
        (["--backbone", "medium"], "--backbone 'medium' is not known"),
        (["--imgsz", "100"], "--imgsz 100: not a multiple of 32, the model's stride; nearest valid: 96 or 128"),
        (["--nc", "0"], "--nc 0 must be >= 1"),
    ],
)
def test_profile_cli_bad_options_are_clear_errors(args, message):
    result = runner.invoke(app, ["profile", "--runs", "0", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
