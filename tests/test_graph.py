"""Graph builder: the source material's mis-wired yaml, integer and named `from`, and clear wiring errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mnv3det.errors import UserError
from mnv3det.models import build_model
from mnv3det.models.recipes import recipes_dir

# The Small model as the source material prints it: a 12-row MobileNetV3-Small backbone under a head whose
# `from` indices were copied from yolov5s (10-row backbone): [-1, 6], [-1, 4], 14, 10, [17, 20, 23].
SOURCE_SMALL_YAML = """
nc: 80
depth_multiple: 1.0
width_multiple: 0.5
anchors:
  - [10,13, 16,30, 33,23]  # P3/8
  - [30,61, 62,45, 59,119]  # P4/16
  - [116,90, 156,198, 373,326]  # P5/32
backbone:
  [[-1, 1, conv_bn_hswish, [16, 2]],                 # 0-p1/2
   [-1, 1, MobileNet_Block, [16,  16, 3, 2, 1, 0]],  # 1-p2/4
   [-1, 1, MobileNet_Block, [24,  72, 3, 2, 0, 0]],  # 2-p3/8
   [-1, 1, MobileNet_Block, [24,  88, 3, 1, 0, 0]],  # 3-p3/8
   [-1, 1, MobileNet_Block, [40,  96, 5, 2, 1, 1]],  # 4-p4/16
   [-1, 1, MobileNet_Block, [40, 240, 5, 1, 1, 1]],  # 5-p4/16
   [-1, 1, MobileNet_Block, [40, 240, 5, 1, 1, 1]],  # 6-p4/16
   [-1, 1, MobileNet_Block, [48, 120, 5, 1, 1, 1]],  # 7-p4/16
   [-1, 1, MobileNet_Block, [48, 144, 5, 1, 1, 1]],  # 8-p4/16
   [-1, 1, MobileNet_Block, [96, 288, 5, 2, 1, 1]],  # 9-p5/32
   [-1, 1, MobileNet_Block, [96, 576, 5, 1, 1, 1]],  # 10-p5/32
   [-1, 1, MobileNet_Block, [96, 576, 5, 1, 1, 1]],  # 11-p5/32
  ]
head:
  [[-1, 1, Conv, [512, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 6], 1, Concat, [1]],  # cat backbone P4
   [-1, 3, C3, [512, False]],
   [-1, 1, Conv, [256, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 4], 1, Concat, [1]],  # cat backbone P3
   [-1, 3, C3, [256, False]],
   [-1, 1, Conv, [256, 3, 2]],
   [[-1, 14], 1, Concat, [1]],  # cat head P4
   [-1, 3, C3, [512, False]],
   [-1, 1, Conv, [512, 3, 2]],
   [[-1, 10], 1, Concat, [1]],  # cat head P5
   [-1, 3, C3, [1024, False]],
   [[17, 20, 23], 1, Detect, [nc, anchors]],
  ]
"""

# YOLOv5n with plain integer `from` indices, as YOLOv5's own yaml files write them.
YOLOV5N_INTEGER_HEAD = [
    [-1, 1, "Conv", [512, 1, 1]],
    [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
    [[-1, 6], 1, "Concat", [1]],
    [-1, 3, "C3", [512, False]],
    [-1, 1, "Conv", [256, 1, 1]],
    [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
    [[-1, 4], 1, "Concat", [1]],
    [-1, 3, "C3", [256, False]],
    [-1, 1, "Conv", [256, 3, 2]],
    [[-1, 14], 1, "Concat", [1]],
    [-1, 3, "C3", [512, False]],
    [-1, 1, "Conv", [512, 3, 2]],
    [[-1, 10], 1, "Concat", [1]],
    [-1, 3, "C3", [1024, False]],
    [[17, 20, 23], 1, "Detect", ["nc", "anchors"]],
]


def _recipe(name: str) -> dict:
    return yaml.safe_load((recipes_dir() / f"{name}.yaml").read_text())


def test_source_material_yaml_gets_a_clear_wiring_error(tmp_path: Path):
    path = tmp_path / "yolov5s-mobilenetv3-small.yaml"
    path.write_text(SOURCE_SMALL_YAML)
    with pytest.raises(UserError) as info:
        build_model(path)
    message = str(info.value)
    # names the file, the row, its module, the rows it reads with their shapes, and what to fix
    assert str(path) in message
    assert "row 18 (Concat)" in message
    assert "row 17 (1, 128, 32, 32) (/8)" in message and "row 4 (1, 40, 16, 16) (/16)" in message
    assert "same height and width" in message and "P3/P4/P5" in message


def test_integer_from_indices_still_build_yolov5_graphs():
    recipe = _recipe("yolov5n")
    recipe["backbone"] = [row[:4] for row in recipe["backbone"]]  # drop the names
    recipe["head"] = YOLOV5N_INTEGER_HEAD
    integer = build_model(recipe)
    named = build_model("yolov5n")
    assert sum(p.numel() for p in integer.parameters()) == 1_872_157
    assert [m.f for m in integer.layers] == [m.f for m in named.layers]


def test_named_taps_let_one_head_serve_every_backbone():
    heads = {name: (recipes_dir() / f"{name}.yaml").read_text().split("\nhead:")[1] for name in
             ("mnv3-small", "mnv3-large", "mnv2")}
    assert heads["mnv3-small"] == heads["mnv3-large"] == heads["mnv2"]
    small, large = build_model("mnv3-small"), build_model("mnv3-large")
    # the Concat reading P4 resolves to row 8 in Small and row 12 in Large
    assert small.layers[14].f == [13, 8] and large.layers[18].f == [17, 12]


def _broken(mutate) -> dict:
    recipe = _recipe("yolov5n")
    mutate(recipe)
    return recipe


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["head"].__setitem__(2, [[-1, 30], 1, "Concat", [1]]), r"row 12 \(Concat\) reads from 30, which is out of range"),
        (lambda r: r["head"].__setitem__(0, ["P5", 1, "ConvX", [512, 1, 1]]), r"unknown module 'ConvX'; known modules: .*MobileNet_Block"),
        (lambda r: r["head"].__setitem__(2, [[-1, "P6"], 1, "Concat", [1]]), r"reads 'P6', which no earlier row is named"),
        (lambda r: r["head"].__setitem__(-1, [["P5_out", "P4_out", "P3_out"], 1, "Detect", ["nc", "anchors"]]),
         r"row 24 \(Detect\) .*strides \[32.0, 16.0, 8.0\] are not increasing"),
        (lambda r: r["backbone"].__setitem__(1, [-1, 1, "MobileNet_Block", [16, 3]]), r"row 1 \(MobileNet_Block .* could not be built"),
        (lambda r: r.pop("head"), r"missing or malformed 'head'"),
        (lambda r: r.__setitem__("anchors", [[10, 13, 16]]), r"anchors must be a list"),
        (lambda r: r.__setitem__("nc", "eighty"), r"nc must be a positive integer"),
        (lambda r: r["head"].append([-1, 1, "Conv", [16, 1, 1]]), r"the last row, and only the last row, must be Detect"),
        (lambda r: r["backbone"].__setitem__(0, [0, 1, "Conv", [64, 6, 2, 2]]), r"the first row must read -1, the image"),
        (lambda r: r["head"].__setitem__(0, ["P5_lateral", 1, "Conv", [512, 1, 1], "P5_lateral"]),
         r"row 10 \(Conv\) reads 'P5_lateral', which no earlier row is named"),
        (lambda r: r["head"].__setitem__(1, [[-1, 9], 1, "nn.Upsample", ["None", 2, "nearest"]]),
         r"nn.Upsample takes exactly one input"),
    ],
    ids=["from-out-of-range", "unknown-module", "unknown-name", "strides-decreasing", "bad-args", "no-head",
         "bad-anchors", "bad-nc", "detect-not-last", "row0-not-image", "reads-itself", "two-inputs"],
)
def test_wiring_errors_name_the_row_and_the_fix(mutate, expected):
    with pytest.raises(UserError, match=expected):
        build_model(_broken(mutate))


def test_bad_yaml_file_is_a_user_error(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("nc: [1, 2\n")
    with pytest.raises(UserError, match="line 2, column 1: .*fix the yaml syntax there"):
        build_model(path)
    with pytest.raises(UserError, match="does not exist"):
        build_model(tmp_path / "missing.yaml")


def test_recipe_dict_is_not_modified_by_build():
    recipe = _recipe("mnv3-small")
    original = copy.deepcopy(recipe)
    build_model(recipe, nc=3)
    assert recipe == original
