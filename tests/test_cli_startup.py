"""The command line starts light: `--help`, `--version` and usage errors import no torch, cv2, albumentations or
runtime (start-up time itself is measured by benchmarks/bench_startup.py, never here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_version_option_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mnv3det {mnv3det.__version__}"
