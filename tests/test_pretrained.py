"""Pretrained backbones: torchvision state_dicts (randomly initialised, never downloaded) map row to row."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from mnv3det.errors import UserError
from mnv3det.models import build_model, load_backbone_weights
from mnv3det.models.graph import run_rows

CASES = {
    "mnv3-small": (torchvision.models.mobilenet_v3_small, [3, 8, 11]),
    "mnv3-large": (torchvision.models.mobilenet_v3_large, [6, 12, 15]),
    "mnv2": (torchvision.models.mobilenet_v2, [6, 13, 17]),
}


def _torchvision_state(recipe: str, path: Path) -> nn.Module:
    """A randomly initialised torchvision model with non-trivial BN statistics, saved to `path`."""
    torch.manual_seed(11)
    tv = CASES[recipe][0]().eval()
    for bn in tv.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    torch.save(tv.state_dict(), path)
    return tv


@pytest.mark.parametrize("recipe", sorted(CASES))
def test_loaded_backbone_matches_torchvision_features_at_p3_p4_p5(recipe, tmp_path):
    path = tmp_path / f"{recipe}.pth"
    tv = _torchvision_state(recipe, path)
    taps = CASES[recipe][1]
    model = build_model(recipe, nc=3)
    report = load_backbone_weights(model, path)
    backbone_keys = [k for k in model.state_dict() if k.startswith("layers.") and int(k.split(".")[1]) <= taps[-1]]
    assert report.mapped == len(backbone_keys) and report.rows == taps[-1] + 1
    assert report.architecture == {"mnv3-small": "mobilenet_v3_small", "mnv3-large": "mobilenet_v3_large",
                                   "mnv2": "mobilenet_v2"}[recipe]
    assert all(k.startswith(("features.", "classifier.")) for k in report.unused)

    model.eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        ours = run_rows(model.layers[: taps[-1] + 1], x)
        theirs, y = [], x
        for block in tv.features[: taps[-1] + 1]:
            y = block(y)
            theirs.append(y)
    for t in taps:
        torch.testing.assert_close(ours[t], theirs[t], rtol=0, atol=1e-5)


def test_architecture_names_in_report(tmp_path):
    _torchvision_state("mnv3-large", tmp_path / "large.pth")
    report = load_backbone_weights(build_model("mnv3-large"), tmp_path / "large.pth")
    assert report.architecture == "mobilenet_v3_large"
    assert "302 tensors into rows 0..15" in report.summary()


def test_a_file_that_does_not_fit_is_refused_and_nothing_changes(tmp_path):
    _torchvision_state("mnv3-large", tmp_path / "large.pth")
    model = build_model("mnv3-small")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match=r"does not fit .*mobilenet_v3_small.*looks like mobilenet_v3_large"):
        load_backbone_weights(model, tmp_path / "large.pth")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_other_bad_sources_are_user_errors(tmp_path):
    model = build_model("mnv3-small")
    with pytest.raises(UserError, match="file not found"):
        load_backbone_weights(model, tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="could not read it"):
        load_backbone_weights(model, tmp_path / "junk.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="no 'features.\\*' tensors"):
        load_backbone_weights(model, tmp_path / "other.pth")
    with pytest.raises(UserError, match="no MobileNet backbone rows"):
        load_backbone_weights(build_model("yolov5n"), tmp_path / "other.pth")


def _offline_torch_home(tmp_path, monkeypatch) -> Path:
    """A temporary TORCH_HOME (torch.hub.get_dir() = TORCH_HOME/hub) whose downloads fail as offline ones do:
    torchvision's own download function is replaced, so nothing ever reaches the network."""
    import urllib.error

    import torchvision.models._api as weights_api

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # no set_dir() from elsewhere: TORCH_HOME decides

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", offline)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_imagenet_offline_names_the_file_and_the_folder(tmp_path, monkeypatch):
    folder = _offline_torch_home(tmp_path, monkeypatch)
    name = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    with pytest.raises(UserError) as err:
        load_backbone_weights(build_model("mnv3-small"), "imagenet")
    message = str(err.value)
    assert "\n" not in message and "could not download" in message
    assert f"put {name} (from https://" in message and f"in {folder} and run again" in message


def test_imagenet_from_the_hub_cache_loads_one_to_one(tmp_path, monkeypatch):
    folder = _offline_torch_home(tmp_path, monkeypatch)
    url = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.url
    folder.mkdir(parents=True)
    cached = folder / url.rsplit("/", 1)[-1]  # where torchvision's weights API keeps it
    tv = _torchvision_state("mnv3-small", cached)  # random init, torchvision's keys
    model = build_model("mnv3-small")
    report = load_backbone_weights(model, "imagenet")
    assert report.source == str(cached) and report.rows == 12 and report.architecture == "mobilenet_v3_small"
    theirs = tv.state_dict()
    ours = model.state_dict()
    copied = [k for k in ours if k.startswith("layers.") and int(k.split(".")[1]) < 12]
    assert len(copied) == report.mapped
    for key in copied:
        assert torch.equal(ours[key], theirs["features." + key.split(".", 1)[1]]), key


def test_imagenet_online_downloads_into_the_hub_cache(tmp_path, monkeypatch):
    """The download goes through torchvision's weights API into torch's cache (simulated: no network in tests)."""
    import mnv3det.models.pretrained as pretrained

    folder = _offline_torch_home(tmp_path, monkeypatch)
    asked = []

    def fake_download(weights):  # what torch.hub does: the file, named as in the URL, under hub/checkpoints
        asked.append(weights)
        folder.mkdir(parents=True, exist_ok=True)
        _torchvision_state("mnv3-small", folder / weights.url.rsplit("/", 1)[-1])

    monkeypatch.setattr(pretrained, "download_imagenet", fake_download)
    report = load_backbone_weights(build_model("mnv3-small"), "imagenet")
    assert asked == [torchvision.models.MobileNet_V3_Small_Weights.DEFAULT]
    assert Path(report.source).parent == folder and report.mapped > 0
