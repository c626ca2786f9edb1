"""The command line starts light: `--help`, `--version` and usage errors import no torch, cv2, albumentations or
runtime (start-up time itself is measured by benchmarks/bench_startup.py, never here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from typer.testing import CliRunner

import mnv3det
from mnv3det.cli import app

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "cv2", "albumentations", "onnxruntime", "openvino", "nncf", "ncnn", "matplotlib", "pycocotools")
runner = CliRunner()


def _heavy_modules_after(args: list[str]) -> list[str]:
    """Run `mnv3det ARGS` in a fresh interpreter and list the heavy packages it imported."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['mnv3det', *{args!r}]\n"
        "try:\n    runpy.run_module('mnv3det', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    marker = [line for line in done.stderr.splitlines() if line.startswith("HEAVY:")]
    assert marker, done.stderr
    return [m for m in marker[-1][len("HEAVY:"):].split(",") if m]


def test_help_version_and_usage_errors_import_nothing_heavy():
    for args in (["--help"], ["--version"], ["val"], ["detect", "--help"], ["profile", "--help"], ["benchmark", "--help"],
                 ["check-app", "--help"]):
        assert _heavy_modules_after(args) == [], args


# Usage mistakes that used to cost 7-8 s of CPU (torch, albumentations and the data first; issue 31): each is one
# line, exit status 2, with none of the heavy packages imported.
USAGE_ERRORS = {
    "unknown recipe": (["train", "--recipe", "no-such-recipe"], "no-such-recipe"),
    "unknown backbone": (["train", "--backbone", "medium"], "--backbone 'medium'"),
    "missing data": (["train", "--data", "no/such/data.yaml"], "--data no/such/data.yaml"),
    "unknown hyp preset": (["train", "--hyp", "hyp.nope"], "--hyp hyp.nope"),
    "missing train weights": (["train", "--weights", "no/such.pt"], "no/such.pt"),
    "missing backbone weights": (["train", "--backbone-weights", "no/such.pth"], "--backbone-weights no/such.pth"),
    "unknown format": (["export", "--weights", "no/such.pt", "--format", "onnx-fp3"], "--format 'onnx-fp3'"),
    "missing export weights": (["export", "--weights", "no/such.pt"], "no/such.pt"),
    "missing val weights": (["val", "--weights", "no/such.pt"], "--weights no/such.pt"),
    "missing val data": (["val", "--weights", "README.md", "--data", "no/such"], "--data no/such"),
    "missing detect weights": (["detect", "README.md", "--weights", "no/such.onnx"], "--weights no/such.onnx"),
    "missing benchmark weights": (["benchmark", "--weights", "no/such.pt"], "no/such.pt"),
    "unknown benchmark format": (["benchmark", "--weights", "README.md", "--formats", "onnx-fp3"], "onnx-fp3"),
}


def _run_cli(args: list[str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`mnv3det ARGS` in a fresh interpreter: the finished process and the heavy packages it imported."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['mnv3det', *{args!r}]\n"
        "try:\n    runpy.run_module('mnv3det', run_name='__main__')\n"
        "except SystemExit as e:\n"
        f"    print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
        "    raise\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    marker = [line for line in done.stderr.splitlines() if line.startswith("HEAVY:")]
    assert marker, done.stderr
    return done, [m for m in marker[-1][len("HEAVY:"):].split(",") if m]


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_mistakes_are_one_line_before_any_heavy_import(case):
    args, named = USAGE_ERRORS[case]
    done, heavy = _run_cli(args)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("HEAVY:")]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0], lines
    assert heavy == [], (case, heavy)


def test_version_option_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mnv3det {mnv3det.__version__}"
