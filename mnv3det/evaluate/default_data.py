"""Which data `mnv3det val` evaluates on when `--data` is not given: the data the checkpoint was trained on.

A .pt written by `mnv3det train` records its data (`Checkpoint.data.source`, the data yaml or dataset folder, and
`config["data"]`, None for the built-in demo set). Exports record no data, so they keep the demo set. Either
way the choice is said in one line, so a number is never shown for data the user did not mean.
"""

from __future__ import annotations

from pathlib import Path

from mnv3det.errors import UserError

DEMO = None  # load_data(None): the built-in demo set


def data_for_weights(weights: str | Path) -> tuple[str | None, str]:
    """(data for `load_data`, the line that says why) for `weights` when `--data` was left out."""
    path = Path(weights)
    if path.suffix.lower() != ".pt" or not path.is_file():  # an export (or a missing file: load_backend says so)
        return DEMO, "no --data: evaluating on the built-in demo set (exports do not record their data)"
    from mnv3det.core.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    if ckpt.data is None:  # weights-only files, or written by another tool
        return DEMO, f"no --data: evaluating on the built-in demo set ({path.name} does not record its data)"
    if ckpt.config and ckpt.config.get("data") is None:  # TrainConfig.data None: trained on the demo set
        return DEMO, f"no --data: evaluating on the built-in demo set, which {path.name} was trained on"
    source = Path(ckpt.data.source)
    if source.exists():
        return str(source), f"no --data: evaluating on {source}, the data {path.name} was trained on"
    raise UserError(
        f"--data not given and {source}, the data {path} was trained on, no longer exists; pass --data DATA_YAML"
    )
