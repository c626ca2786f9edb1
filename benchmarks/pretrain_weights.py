"""Make the pretrained weights that ship in mnv3det/weights/, and measure what they buy on BCCD (issue 20).

    python benchmarks/pretrain_weights.py make --recipe mnv3-small-min       # re-make one shipped file (resumable)
    python benchmarks/pretrain_weights.py make --recipe yolov5n --device 0   # the same on a GPU
    python benchmarks/pretrain_weights.py eval --seeds 0,1,2                 # the frontier protocol, pretrained vs scratch

`make` runs `mnv3det pretrain` with the settings in SHIPPED (the same for every recipe but the budget), in
runs/pretrain/<recipe>; a killed run continues from its last checkpoint when the command is given again. When it
ends, its weights/pretrained.pt (fp16 EMA weights + provenance) is copied to mnv3det/weights/<recipe>.pt.
`eval` trains the issue's points (mnv3-small-min @416, yolov5n @320) from the shipped weights and from scratch with
benchmarks/frontier.py (BCCD, hyp.small-data, 30 epochs, batch 16, pycocotools on val and test; one key per start),
then writes the frontier report. Run the steps on a machine where nothing else runs if you quote their minutes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "mnv3det" / "weights"
RUNS = ROOT / "runs" / "pretrain"

# What each shipped file was made with: `mnv3det pretrain` options (the rest are hyp.pretrain's defaults).
SHIPPED: dict[str, list[str]] = {
    "mnv3-small-min": ["--samples", "49152"],
    "mnv3-small": ["--samples", "49152"],
    "yolov5n": ["--samples", "49152"],
    # the anchor-free recipes (issue 29): the same budget, so the comparison is pretrained against pretrained
    "mnv3-small-min-af": ["--samples", "49152"],
    "mnv3-small-af": ["--samples", "49152"],
    "yolov5n-af": ["--samples", "49152"],
}
COMMON = ["--imgsz", "416", "--seed", "0", "--batch", "16"]
EVAL_POINTS = "mnv3-small-min@416,yolov5n@320"


def make(recipe: str, threads: int | None, workers: int, device: str | None, runs: Path = RUNS) -> Path:
    run = runs / recipe
    machine = (["--threads", str(threads)] if threads else []) + ["--workers", str(workers)] + (
        ["--device", device] if device else [])
    last = run / "weights" / "last.pt"
    if last.is_file():
        cmd = ["pretrain", "--resume", str(run), *machine]
    else:
        cmd = ["pretrain", "--recipe", recipe, *COMMON, *SHIPPED[recipe], "--project", str(runs), "--name", recipe,
               *machine]
    if not (run / "weights" / "pretrained.pt").is_file():
        subprocess.run([sys.executable, "-m", "mnv3det", *cmd], cwd=ROOT, check=True)
    out = WEIGHTS / f"{recipe}.pt"
    WEIGHTS.mkdir(exist_ok=True)
    shutil.copyfile(run / "weights" / "pretrained.pt", out)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out


def evaluate(seeds: str, threads: int | None, workers: int) -> None:
    frontier = [sys.executable, str(ROOT / "benchmarks" / "frontier.py")]
    common = ["--points", EVAL_POINTS, "--seeds", seeds, "--workers", str(workers)] + (
        ["--threads", str(threads)] if threads else [])
    for start in ("scratch", "shipped"):
        subprocess.run([*frontier, "train", *common, "--start", start], cwd=ROOT, check=True)
    subprocess.run([*frontier, "report"], cwd=ROOT, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--recipe", required=True, choices=sorted(SHIPPED))
    m.add_argument("--device", default=None)
    m.add_argument("--runs", type=Path, default=RUNS, help="where the run folders live (default runs/pretrain)")
    e = sub.add_parser("eval")
    e.add_argument("--seeds", default="0,1,2")
    for p in (m, e):
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.recipe, args.threads, args.workers, args.device, args.runs)
    else:
        evaluate(args.seeds, args.threads, args.workers)


if __name__ == "__main__":
    main()
