"""`mnv3det.train(...)`: train from Python with the same rules as `mnv3det train`.

    import mnv3det
    result = mnv3det.train(data="data.yaml", backbone="small", epochs=30, imgsz=416, hyp="hyp.small-data")
    result.best                                   # Path of best.pt; result.history: one dict per epoch
    mnv3det.train(resume="runs/train/exp")        # continue a killed run (True: the newest under runs/train)

Keywords are the fields of `mnv3det.train.config.TrainConfig`. Precedence: TrainConfig defaults < `hyp`
yaml < keywords given here. With no `data` and no `hyp` the built-in demo set trains with `hyp.demo`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from mnv3det.core.console import make_console
from mnv3det.errors import UserError
from mnv3det.train.config import TrainConfig, apply_overrides, load_hyp
from mnv3det.train.start_checks import check_start

if TYPE_CHECKING:  # the trainer brings torch: imported once the names and paths are known to be right
    from mnv3det.train.trainer import TrainResult


def train(*, hyp: str | Path | None = None, backbone: str | None = None, resume: bool | str | Path = False,
          console: Console | None = None, progress: bool = True, **overrides: Any) -> TrainResult:
    """Train a detector (or continue one with `resume`) and return its TrainResult.

    hyp: a yaml of TrainConfig fields or a preset name (hyp.scratch, hyp.small-data, hyp.demo);
    backbone: "small" | "large" (picks the recipe; or give `recipe=`); resume: a run folder, its last.pt, or
    True for the newest run under `project`; with resume only device, workers and threads may be given.
    overrides: TrainConfig fields; None values are ignored (as an option left out on the command line).
    """
    console = console or make_console(stderr=True)
    given = {k: v for k, v in overrides.items() if v is not None}
    if backbone is not None and "recipe" in given:
        raise UserError("give either --backbone (small|large) or --recipe, not both")
    if backbone is not None:
        from mnv3det.models import recipe_for_backbone

        given["recipe"] = recipe_for_backbone(backbone)
    if resume is not False and resume is not None:
        from mnv3det.train.resume import config_for_resume, find_last_checkpoint
        from mnv3det.train.trainer import fit

        if hyp is not None:
            raise UserError("--hyp cannot change a run being resumed; resume uses the run's saved config")
        last = find_last_checkpoint(None if resume is True else resume, given.pop("project", "runs/train"))
        cfg, _ = config_for_resume(last, given)
        return fit(cfg, resume=last, console=console, show_progress=progress)
    # Names and paths first (an unknown preset or recipe, a missing file): one line before anything heavy.
    start = apply_overrides(TrainConfig(), load_hyp(hyp), f"--hyp {hyp}") if hyp is not None else TrainConfig()
    check_start(apply_overrides(start, given, "command-line options"))
    if given.get("data") is None and hyp is None:
        hyp = "hyp.demo"  # no data given: the demo set with settings that train it in a few CPU minutes
        console.print("no --data: training on the built-in demo set with the hyp.demo preset (recipes/hyp.demo.yaml)")
    elif hyp is None:  # the preset that suits the data's size (mnv3det.data.presets: measured threshold)
        from mnv3det.data import load_data
        from mnv3det.data.presets import suggest_preset

        hyp, why = suggest_preset(load_data(given["data"]), max_images=given.get("max_images"), report=False)
        console.print(f"no --hyp: {why}", highlight=False)
    cfg = TrainConfig()
    if hyp is not None:
        cfg = apply_overrides(cfg, load_hyp(hyp), f"--hyp {hyp}")
    cfg = apply_overrides(cfg, given, "command-line options")
    from mnv3det.train.trainer import fit

    return fit(cfg, console=console, show_progress=progress)
