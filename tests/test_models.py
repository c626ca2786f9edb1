"""Models: registry module shapes, recipes, the DetectionModel contract, Detect decode, fuse, parameter counts."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torchvision
from torch import nn

from mnv3det.errors import UserError
from mnv3det.models import DetectionModel, available_recipes, build_model, recipe_for_backbone
from mnv3det.models import layers as L
from mnv3det.models.detect import Detect
from mnv3det.models.graph import REGISTRY, run_rows
from mnv3det.models.light_head import CSPDS, DSConv
from mnv3det.models.recipes import load_recipe

ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]

# registry name -> (module built with in-channels 16, input, expected output shape)
X16 = torch.rand(2, 16, 16, 16)
MODULE_CASES = {
    "h_sigmoid": (lambda: L.h_sigmoid(), X16, (2, 16, 16, 16)),
    "h_swish": (lambda: L.h_swish(), X16, (2, 16, 16, 16)),
    "SELayer": (lambda: L.SELayer(16), X16, (2, 16, 16, 16)),
    "conv_bn_hswish": (lambda: L.conv_bn_hswish(16, 8, 2), X16, (2, 8, 8, 8)),
    "MobileNet_Block": (lambda: L.MobileNet_Block(16, 24, 72, 5, 2, True, True), X16, (2, 24, 8, 8)),
    "DWSConv": (lambda: L.DWSConv(16, 32, 3, 2), X16, (2, 32, 8, 8)),
    "conv_bn_relu6": (lambda: L.conv_bn_relu6(16, 32, 2), X16, (2, 32, 8, 8)),
    "InvertedResidual": (lambda: L.InvertedResidual(16, 24, 6, 1), X16, (2, 24, 16, 16)),
    "Conv": (lambda: L.Conv(16, 32, 3, 2), X16, (2, 32, 8, 8)),
    "Bottleneck": (lambda: L.Bottleneck(16, 16), X16, (2, 16, 16, 16)),
    "C3": (lambda: L.C3(16, 32, 2, False), X16, (2, 32, 16, 16)),
    "SPPF": (lambda: L.SPPF(16, 24, 5), X16, (2, 24, 16, 16)),
    "DSConv": (lambda: DSConv(16, 32, 5, 2), X16, (2, 32, 8, 8)),
    "CSPDS": (lambda: CSPDS(16, 32, 2, 5), X16, (2, 32, 16, 16)),
    "Concat": (lambda: L.Concat(1), [X16, torch.rand(2, 8, 16, 16)], (2, 24, 16, 16)),
    "nn.Upsample": (lambda: nn.Upsample(None, 2, "nearest"), X16, (2, 16, 32, 32)),
}


def test_every_registry_module_has_a_shape_case():
    assert set(MODULE_CASES) | {"Detect", "AFDetect"} == set(REGISTRY)  # the heads: below and in test_af_head.py


@pytest.mark.parametrize("name", sorted(MODULE_CASES))
def test_registry_module_output_shape(name):
    make, x, expected = MODULE_CASES[name]
    module = make().eval()
    with torch.no_grad():
        assert tuple(module(x).shape) == expected


def test_hard_activations_match_their_formulas():
    x = torch.tensor([-4.0, -3.0, 0.0, 1.0, 3.0, 4.0])
    assert torch.allclose(L.h_sigmoid()(x), torch.tensor([0, 0, 0.5, 4 / 6, 1, 1]))
    assert torch.allclose(L.h_swish()(x), torch.tensor([0, 0, 0, 4 / 6, 3, 4]))


def test_se_squeeze_width_and_block_layout_follow_torchvision():
    assert L.SELayer(72).fc1.out_channels == 24  # make_divisible(18, 8) -> 24 (16 would be < 90% of 18)
    assert L.SELayer(16).fc1.out_channels == 8
    no_expand = L.MobileNet_Block(16, 16, 16, 3, 2, True, False)  # hidden == in: no 1x1 expand conv
    assert [type(m).__name__ for m in no_expand.block] == ["ConvNormAct", "SELayer", "ConvNormAct"]
    expand = L.MobileNet_Block(24, 40, 96, 5, 2, True, True)
    assert [type(m).__name__ for m in expand.block] == ["ConvNormAct", "ConvNormAct", "SELayer", "ConvNormAct"]
    assert expand.block[0][1].eps == 1e-3
    assert L.MobileNet_Block(40, 40, 240, 5, 1, True, True).use_residual and not expand.use_residual


@pytest.mark.parametrize(
    "recipe, tv_fn, rows",
    [
        ("mnv3-small", torchvision.models.mobilenet_v3_small, 12),
        ("mnv3-large", torchvision.models.mobilenet_v3_large, 16),
        ("mnv2", torchvision.models.mobilenet_v2, 18),
    ],
)
def test_backbone_parameter_counts_equal_torchvision_features(recipe, tv_fn, rows):
    # Our backbone holds torchvision's features[0:rows]; the final 1x1 conv to 576/960/1280 is left out.
    model = build_model(recipe)
    ours = sum(p.numel() for p in model.layers[:rows].parameters())
    theirs = sum(p.numel() for p in tv_fn().features[:rows].parameters())
    assert ours == theirs
    assert model.layers[rows].type == "Conv"  # the head starts right after the backbone


@pytest.mark.parametrize("recipe, params", [("yolov5n", 1_872_157), ("yolov5s", 7_235_389)])
def test_yolov5_baselines_have_published_parameter_counts(recipe, params):
    assert sum(p.numel() for p in build_model(recipe, nc=80).parameters()) == params


@pytest.mark.parametrize(
    "recipe",
    ["mnv3-small", "mnv3-small-min", "mnv3-small-min-wide", "mnv3-small-dsh", "mnv3-small-dsh-wide", "mnv3-large",
     "mnv3-large-min", "mnv2", "yolov5n", "yolov5s"],
)
def test_every_recipe_builds_and_runs_in_train_and_eval_mode(recipe):
    assert recipe in available_recipes()
    model = build_model(recipe, nc=3)
    x = torch.rand(2, 3, 64, 96)
    raw = model(x)
    assert [tuple(r.shape) for r in raw] == [(2, 3, 8, 12, 8), (2, 3, 4, 6, 8), (2, 3, 2, 3, 8)]
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 3 * (8 * 12 + 4 * 6 + 2 * 3), 8)
    assert bool(((out[..., 4:] >= 0) & (out[..., 4:] <= 1)).all())


def test_detection_model_contract():
    model = build_model("mnv3-small", nc=3)
    assert isinstance(model, DetectionModel) and isinstance(model.layers, nn.ModuleList)
    assert model.nc == 3 and model.names == ["0", "1", "2"]
    assert model.detect is model.layers[-1] and isinstance(model.detect, Detect)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert (model.detect.nl, model.detect.na, model.detect.no) == (3, 3, 8)
    assert [(m.i, m.type) for m in model.layers[:2]] == [(0, "conv_bn_hswish"), (1, "MobileNet_Block")]
    assert model.layers[-1].f == [19, 22, 25]  # named taps resolved to absolute rows
    # anchors: a buffer in stride units (pixels / stride)
    expected = torch.tensor(ANCHORS, dtype=torch.float32).view(3, 3, 2) / torch.tensor([8.0, 16, 32]).view(3, 1, 1)
    assert torch.allclose(model.detect.anchors, expected)
    key = f"layers.{len(model.layers) - 1}.anchors"
    assert key in model.state_dict()
    # recipe holds resolved nc/anchors and rebuilds the same graph
    assert model.recipe["nc"] == 3 and model.recipe["anchors"] == [[float(v) for v in a] for a in ANCHORS]
    rebuilt = build_model(model.recipe)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())


def test_set_anchors_updates_buffer_and_recipe():
    model = build_model("yolov5n", nc=2)
    new = torch.tensor(ANCHORS, dtype=torch.float32).view(3, 3, 2) * 1.5
    model.set_anchors(new)
    assert torch.allclose(model.detect.anchors * model.stride.view(3, 1, 1), new)
    rebuilt = build_model(model.recipe)
    assert torch.allclose(rebuilt.detect.anchors, model.detect.anchors)
    with pytest.raises(ValueError):
        model.set_anchors(torch.ones(2, 3, 2))


def test_detect_decode_matches_hand_computed_boxes():
    model = build_model("yolov5n", nc=2).eval()
    for conv in model.detect.m:  # all-zero logits -> every sigmoid is 0.5
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    # level 0 (stride 8, 8x8 cells), anchor 0 (10x13 px), cell (x=0, y=0): xy = (2*0.5 - 0.5 + 0) * 8 = 4
    assert torch.allclose(out[0, 0], torch.tensor([4.0, 4.0, 10.0, 13.0, 0.5, 0.5, 0.5]))
    # level 0, anchor 0, cell (x=1, y=0) is the next row; anchor 1 starts after 64 cells
    assert torch.allclose(out[0, 1, :4], torch.tensor([12.0, 4.0, 10.0, 13.0]))
    assert torch.allclose(out[0, 64, :4], torch.tensor([4.0, 4.0, 16.0, 30.0]))
    # first box of level 2 (stride 32, 2x2 cells): after 3*64 + 3*16 rows, anchor 116x90
    assert torch.allclose(out[0, 3 * 64 + 3 * 16, :4], torch.tensor([16.0, 16.0, 116.0, 90.0]))


def _reference_decode(raw: list[torch.Tensor], anchors_px: torch.Tensor, strides: list[float]) -> torch.Tensor:
    """YOLOv5 v6.0 decode written out plainly on channel-last raw maps (B, na, H, W, no)."""
    out = []
    for p, anchor, s in zip(raw, anchors_px, strides):
        b, na, h, w, no = p.shape
        y = p.sigmoid()
        for a in range(na):
            for j in range(h):
                for i in range(w):
                    cell = y[:, a, j, i]
                    cx = (cell[:, 0] * 2 - 0.5 + i) * s
                    cy = (cell[:, 1] * 2 - 0.5 + j) * s
                    bw = (cell[:, 2] * 2) ** 2 * anchor[a, 0]
                    bh = (cell[:, 3] * 2) ** 2 * anchor[a, 1]
                    out.append(torch.cat((torch.stack((cx, cy, bw, bh), 1), cell[:, 4:]), 1))
    return torch.stack(out, 1)  # (B, N, no) in level, anchor, row, column order


def test_eval_decode_agrees_with_a_plain_reference_decode():
    model = build_model("mnv3-small", nc=2).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        outputs = run_rows(model.layers[:-1], x)
        raw = model.detect.raw([outputs[j] for j in model.detect.f])
        fast = model(x)
    anchors_px = model.detect.anchors * model.stride.view(3, 1, 1)
    reference = _reference_decode(raw, anchors_px, model.stride.tolist())
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(model.detect.decode(raw), reference, rtol=1e-5, atol=1e-4)


def test_box_sizes_use_no_pow_and_keep_the_bits_of_the_pow_formula():
    # Detect writes (2 sigmoid)^2 as t * t for LiteRT's converter (no tfl.pow); every other format must get the
    # very same numbers as the YOLOv5 formula `(2 sigmoid) ** 2`.
    model = build_model("mnv3-small-min", nc=2).eval()
    detect, (h, w) = model.detect, (6, 10)
    y = torch.randn(2, detect.na * detect.no, h, w) * 3
    with torch.no_grad():
        out = detect._decode_level(y, 1)  # (B, na * H * W, no)
    s = y.view(2, detect.na, detect.no, h, w).sigmoid()
    anchor_px = (detect.anchors[1] * detect.stride[1]).view(1, detect.na, 2, 1, 1)
    wh = (s[:, :, 2:4] * 2) ** 2 * anchor_px  # (B, na, 2, H, W)
    assert torch.equal(out[..., 2:4], wh.permute(0, 1, 3, 4, 2).reshape(2, -1, 2))


def test_detect_bias_init_priors():
    torch.manual_seed(0)
    head = Detect(nc=5, anchors=ANCHORS, ch=[8, 16, 32])
    before = [conv.bias.detach().clone().view(3, 10) for conv in head.m]
    head.set_strides(torch.tensor([8.0, 16.0, 32.0]))
    for conv, b0, s in zip(head.m, before, (8, 16, 32)):
        delta = conv.bias.detach().view(3, 10) - b0
        assert torch.allclose(delta[:, 4], torch.full((3,), math.log(8 / (640 / s) ** 2)))
        assert torch.allclose(delta[:, 5:], torch.full((3, 5), math.log(0.6 / (5 - 0.99))))
        assert torch.equal(delta[:, :4], torch.zeros(3, 4))


def _randomise_batchnorm(model: nn.Module) -> None:
    torch.manual_seed(3)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("recipe", ["mnv3-small", "mnv3-small-min", "mnv3-large-min", "mnv3-small-dsh", "mnv2", "yolov5n"])
def test_fuse_folds_every_batchnorm_and_keeps_outputs(recipe):
    model = build_model(recipe, nc=4)
    _randomise_batchnorm(model)
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        fused = copy.deepcopy(model).fuse()
        after = fused(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_build_is_deterministic_and_leaves_batchnorm_statistics_untouched():
    torch.manual_seed(7)
    a = build_model("mnv3-small", nc=3)
    torch.manual_seed(7)
    b = build_model("mnv3-small", nc=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.training
    for bn in (m for m in a.modules() if isinstance(m, nn.BatchNorm2d)):
        assert int(bn.num_batches_tracked) == 0
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_recipe_lookup_errors_and_backbone_names():
    assert recipe_for_backbone("small") == "mnv3-small" and recipe_for_backbone("large") == "mnv3-large"
    with pytest.raises(UserError, match="--backbone 'medium'"):
        recipe_for_backbone("medium")
    with pytest.raises(UserError, match="mnv3-small"):  # lists the shipped recipes
        build_model("mnv3-tiny")
    with pytest.raises(UserError, match="nc must be a positive integer"):
        build_model("yolov5n", nc=0)


def test_depthwise_head_parts_have_hand_computed_parameter_counts():
    # DSConv(16 -> 32, k5): depthwise 16*5*5 + BN 2*16, pointwise 16*32 + BN 2*32
    assert sum(p.numel() for p in DSConv(16, 32, 5).parameters()) == 400 + 32 + 512 + 64
    # CSPDS(16 -> 32, n=1, k5): hidden 16; cv1, cv2 1x1 (256 + 32 each); one DSConv(16 -> 16, k5) (400 + 32 + 256
    # + 32); cv3 1x1 on the concat (32*32 + 64)
    assert sum(p.numel() for p in CSPDS(16, 32, 1, 5).parameters()) == 2 * 288 + 720 + 1088


def _head_params(recipe: dict) -> int:
    model = build_model(recipe, nc=80)
    first_head_row = len(recipe["backbone"])
    return sum(p.numel() for m in model.layers[first_head_row:] for p in m.parameters())


def test_depthwise_head_costs_far_less_than_the_c3_head_at_equal_width():
    """The reason the -dsh recipes exist: at the same width the depthwise-separable PAN has about half the parameters."""
    dense, _ = load_recipe("mnv3-small")
    light, _ = load_recipe("mnv3-small-dsh")
    dense = {**dense, "width_multiple": light["width_multiple"]}
    assert light["backbone"] == dense["backbone"]
    assert _head_params(light) < 0.6 * _head_params(dense)  # 410,653 against 792,509 at width 0.25 (laterals and Detect are 1x1 in both)


@pytest.mark.parametrize(
    "minimal_recipe, full_recipe, backbone_rows, params",
    [("mnv3-small-min", "mnv3-small", 12, 605_749), ("mnv3-large-min", "mnv3-large", 16, 2_067_605)],
)  # params: `mnv3det profile --recipe <minimal_recipe>` at nc=80
def test_minimalistic_backbone_drops_se_hswish_and_5x5_but_keeps_channels_and_head(
        minimal_recipe, full_recipe, backbone_rows, params):
    minimal, full = build_model(minimal_recipe, nc=80), build_model(full_recipe, nc=80)
    backbone = nn.ModuleList(minimal.layers[:backbone_rows])
    assert not any(isinstance(m, (L.SELayer, L.h_swish, nn.Hardswish)) for m in backbone.modules())
    depthwise = [m for m in backbone.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == backbone_rows - 1 and {m.kernel_size for m in depthwise} == {(3, 3)}
    # same taps and channel plan as the full recipe, so the identical head text has identical head parameters
    x = torch.rand(1, 3, 64, 64)
    assert [t.shape for t in minimal(x)] == [t.shape for t in full(x)]
    head = slice(backbone_rows, None)
    assert sum(p.numel() for p in minimal.layers[head].parameters()) == sum(
        p.numel() for p in full.layers[head].parameters())
    assert sum(p.numel() for p in minimal.parameters()) == params
