"""Start-up time of the command line: `mnv3det --help`, `mnv3det --version` and one-line usage errors.

    python benchmarks/bench_startup.py                 # 9 fresh processes per case, median reported
    python benchmarks/bench_startup.py --runs 21 --imports
    python benchmarks/bench_startup.py --repo ../main     # another checkout, for a before/after

Each run is a fresh `python -m mnv3det ...` process (the console script does the same import), so the figure
includes the interpreter's own start. The goal (issues 22 and 31) is under 1 s for each case: the CLI imports
torch, cv2, albumentations and the runtimes only inside the command that needs them, after it has checked the
names and paths it was given. Two figures per case: wall seconds, and the CPU seconds (user + sys) the child used,
from `resource.getrusage(RUSAGE_CHILDREN)`, which moves less with the load than the wall time does. On a shared
machine the figures still move with the load, so the load average is printed beside them. This is a
measurement, never a test (tests/test_cli_startup.py checks that these cases import nothing heavy).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (arguments, the exit status it must end with: a usage error is Click's status 2)
CASES: dict[str, tuple[list[str], int]] = {
    "--help": (["--help"], 0),
    "--version": (["--version"], 0),
    "usage error": (["val"], 2),  # --weights missing: Click's one-line usage error
    "val --help": (["val", "--help"], 0),
    # usage mistakes (issue 31): each answered before torch is imported
    "unknown recipe": (["train", "--recipe", "no-such-recipe"], 2),
    "missing data": (["train", "--data", "no/such/data.yaml"], 2),
    "unknown hyp": (["train", "--hyp", "hyp.nope"], 2),
    "train weights": (["train", "--weights", "no/such.pt"], 2),
    "unknown format": (["export", "--weights", "no/such.pt", "--format", "onnx-fp3"], 2),
    "val weights": (["val", "--weights", "no/such.pt"], 2),
    "detect weights": (["detect", "img.jpg", "--weights", "no/such.pt"], 2),
    "bench weights": (["benchmark", "--weights", "no/such.pt"], 2),
}
HEAVY = ("torch", "cv2", "albumentations", "onnxruntime", "openvino", "nncf", "ncnn", "matplotlib", "pycocotools")


def time_once(args: list[str], status: int, repo: Path = REPO) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + sys) of `python -m mnv3det ARGS` in `repo`, from spawn to exit (its exit
    status checked against `status`). The CPU figure is the child's own, from getrusage(RUSAGE_CHILDREN)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mnv3det", *args], cwd=repo, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != status:  # e.g. --version in a checkout from before it existed
        raise CaseFailed(f"exited {done.returncode}, expected {status}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


class CaseFailed(Exception):
    """A case ended with another exit status than expected: reported in its row, not timed."""


def heavy_imports(args: list[str], repo: Path = REPO) -> list[str]:
    """The heavy packages a command has imported by the time it exits (none is the goal for these cases)."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['mnv3det', *{args!r}]\n"
        "try:\n    runpy.run_module('mnv3det', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    found = [line[6:] for line in done.stderr.splitlines() if line.startswith("HEAVY:")]
    return [m for m in (found[-1] if found else "").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="Fresh processes per case (the median is reported).")
    parser.add_argument("--imports", action="store_true", help="Also list heavy packages each case imports.")
    parser.add_argument("--repo", type=Path, default=REPO, help="The checkout to run (python -m mnv3det from there).")
    args = parser.parse_args()
    repo = args.repo.resolve()

    print(f"{repo}: python {sys.version.split()[0]}, {os.cpu_count()} cores, load average before: "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    time_once(["--help"], 0, repo)  # warm the file cache once; not counted
    print(f"{'case':<15} {'wall s':>7} {'min s':>7} {'max s':>7} {'CPU s':>7}  (medians of n={args.runs})")
    for name, (argv, status) in CASES.items():
        try:
            runs = [time_once(argv, status, repo) for _ in range(args.runs)]
        except CaseFailed as failed:
            print(f"{name:<15} {failed}")
            continue
        times, cpu = [wall for wall, _ in runs], [c for _, c in runs]
        line = (f"{name:<15} {statistics.median(times):7.3f} {min(times):7.3f} {max(times):7.3f} "
                f"{statistics.median(cpu):7.3f}")
        if args.imports:
            line += "  imports: " + (", ".join(heavy_imports(argv, repo)) or "none of " + "/".join(HEAVY[:3]) + "/...")
        print(line)
    print("load average after: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
