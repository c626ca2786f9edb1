"""The checkpoint type (nanoGPT-style: it describes itself), written and read only here.

    Checkpoint                      what every .pt file holds (best.pt: `resume` is None)
      format        "mnv3det/2"     (files of format "mnv3det/1" are read too and upgraded in memory)
      recipe        the model graph as a plain dict (the yaml after nc/anchors were resolved)
      nc, names     number of classes, class names (list[str], len nc)
      model         state_dict of the weights to use (the EMA weights during training), float32 on CPU
      epoch         last finished epoch (0-based); -1 for a file that holds weights only
      best_fitness  float or None
      config        the run's TrainConfig as a plain dict ({} when not written by a training run)
      data          DataInfo (names, category ids, format, source, nc, per split a fingerprint of its file list) or None
      resume        ResumeState (raw weights, optimizer, scaler, EMA count, RNG, counters) or None
      provenance    how the weights were made, when not by plain training (pretraining: generator settings,
                    seed, samples seen, wall time, commit); None otherwise. Optional: older files lack it.

Every value is a tensor, number, string, list, tuple, dict or None, so `torch.load(weights_only=True)`
reads it and a checkpoint cannot run code on load. Reading is strict: a file that is not ours, or that
says it is but misses keys or holds weights of another shape, is a one-line `UserError`.

Writes are atomic: a temporary file in the same folder (created with the normal file mode, so the
umask applies), fsync, then os.replace; a run killed mid-save never leaves a truncated file behind,
only a `.NAME.*.tmp` that `remove_stale_temporaries` deletes on the next start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from mnv3det.core.atomic import TMP_MARK, AtomicOutput
from mnv3det.errors import UserError, error_line

FORMAT = "mnv3det/2"
OLD_FORMATS = ("mnv3det/1",)  # read and upgraded in memory; never written
TMP_SUFFIX = TMP_MARK  # .NAME.XXXXXXXX.tmp, as core/atomic.py names its temporaries
WHAT_TO_DO = "use a .pt written by `mnv3det train` (or train again)"


@dataclass
class DataInfo:
    """What the model was trained on: class names and the dataset's ids (to map class indices back), and for
    --resume to refuse other data: nc and each split's file list (`splits`: split -> {"images": count,
    "files": sha1 of the sorted image paths}). nc and splits are absent (None, {}) in files written before."""

    names: list[str]
    category_ids: list[int]
    format: str
    source: str
    nc: int | None = None
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ResumeState:
    """Training-only state of last.pt: enough to continue a run exactly where it stopped."""

    train_model: dict[str, Tensor]  # raw (non-EMA) weights
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None  # None when AMP is off
    ema_updates: int
    rng: dict[str, Any]  # python / numpy / torch / cuda generator states
    best_epoch: int  # -1 = no best yet
    last_opt_step: int  # global batch index of the last optimizer step
    nonfinite_steps: int  # batches skipped for a non-finite loss or gradient so far
    finished: bool  # all epochs done or stopped early: nothing to resume
    stop_reason: str = ""


@dataclass
class Checkpoint:
    """A model with its recipe and class names, plus (last.pt) the state to resume its training."""

    recipe: dict[str, Any]
    nc: int
    names: list[str]
    model: dict[str, Tensor]
    epoch: int = -1
    best_fitness: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    data: DataInfo | None = None
    resume: ResumeState | None = None
    provenance: dict[str, Any] | None = None

    @property
    def train_imgsz(self) -> int | None:
        """The image size the model was trained at, when it came from a training run."""
        value = self.config.get("imgsz")  # config is optional as a whole: a plain weights file has none
        return int(value) if value is not None else None

    @property
    def train_recipe(self) -> str:
        """The recipe name the run was started with ('' when unknown)."""
        return str(self.config.get("recipe") or "")

    def for_inference(self) -> "Checkpoint":
        """A copy without the training state (what best.pt holds)."""
        return dataclasses.replace(self, resume=None)

    def to_dict(self) -> dict[str, Any]:
        """The plain dict that is saved (weights_only-safe)."""
        out = {"format": FORMAT, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        out["data"] = dataclasses.asdict(self.data) if self.data is not None else None
        out["resume"] = dataclasses.asdict(self.resume) if self.resume is not None else None
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "checkpoint") -> "Checkpoint":
        """Check and convert a saved dict; `source` (usually the path) names the file in errors."""
        version = raw.get("format")
        said = f"{source} says format {version!r} but"
        if version in OLD_FORMATS:
            raw = _upgrade_v1(raw)
        elif version != FORMAT:
            raise UserError(f"{source} is not an mnv3det checkpoint (its format is {version!r}, expected {FORMAT!r}); "
                            f"{WHAT_TO_DO}")
        _require(raw, cls, said, "")
        ckpt = cls(**{k: v for k, v in raw.items() if k not in ("format", "data", "resume")})
        if raw.get("data") is not None:
            _require(raw["data"], DataInfo, said, "data.")
            ckpt.data = DataInfo(**raw["data"])
        if raw.get("resume") is not None:
            _require(raw["resume"], ResumeState, said, "resume.")
            ckpt.resume = ResumeState(**raw["resume"])
        _check_values(ckpt, source)
        return ckpt


def _require(raw: Any, kind: type, said: str, prefix: str) -> None:
    """Every field of `kind` without a default is present and no unknown key is: else a clear error.

    said: "FILE says format 'mnv3det/2' but" (the start of the message).
    """
    if not isinstance(raw, Mapping):
        raise UserError(f"{said} its '{prefix.rstrip('.')}' is a {type(raw).__name__}, not a mapping: it is "
                        f"damaged or was written by another tool; {WHAT_TO_DO}")
    known = {f.name for f in dataclasses.fields(kind)}
    needed = {f.name for f in dataclasses.fields(kind)
              if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(needed - set(raw))
    unknown = sorted(set(raw) - known - {"format"})
    if missing or unknown:
        what = "misses " + ", ".join(prefix + k for k in missing) if missing else "has unknown keys " + ", ".join(
            prefix + k for k in unknown)
        raise UserError(f"{said} {what}: it is damaged or was written by another tool; {WHAT_TO_DO}")


def _check_values(ckpt: Checkpoint, source: str) -> None:
    """Types a later step relies on (so a damaged file fails here, in one line, not deep in a load)."""
    problems = []
    if not isinstance(ckpt.recipe, dict):
        problems.append("recipe is not a mapping")
    if not isinstance(ckpt.nc, int) or ckpt.nc < 1:
        problems.append(f"nc is {ckpt.nc!r}")
    if not isinstance(ckpt.names, (list, tuple)) or len(ckpt.names) != ckpt.nc:
        problems.append(f"names has {len(ckpt.names) if isinstance(ckpt.names, (list, tuple)) else '?'} entries "
                        f"for nc {ckpt.nc}")
    if not isinstance(ckpt.model, dict) or not all(isinstance(v, Tensor) for v in ckpt.model.values()):
        problems.append("model is not a state_dict of tensors")
    if not isinstance(ckpt.config, dict):
        problems.append("config is not a mapping")
    if problems:
        raise UserError(f"{source}: {'; '.join(problems)}: the file is damaged or was written by another tool; "
                        f"{WHAT_TO_DO}")
    ckpt.names = [str(n) for n in ckpt.names]


def _upgrade_v1(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A format-1 dict (optimizer/scaler/rng/ema_updates at the top) in format-2 layout."""
    out = {k: v for k, v in raw.items() if k not in ("optimizer", "scaler", "rng", "ema_updates")}
    out["format"] = FORMAT
    out["config"] = raw.get("config") or {}  # format 1 wrote None for files not made by a run
    out["data"] = raw.get("data") or None
    extra = raw.get("resume")
    if extra is not None and raw.get("optimizer") is not None:
        if not isinstance(extra, Mapping):
            extra = {}  # _require reports what is missing
        out["resume"] = {**extra, "optimizer": raw["optimizer"], "scaler": raw.get("scaler"),
                         "ema_updates": raw.get("ema_updates", 0), "rng": raw.get("rng") or {}}
    else:
        out["resume"] = None  # best.pt or a weights-only file
    return out


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def save_checkpoint(ckpt: Checkpoint | Mapping[str, Any], path: str | Path) -> Path:
    """Atomically write `ckpt` to `path` (creating parent folders); returns the path.

    A plain mapping (recipe, nc, names, model, ...) is checked through `Checkpoint.from_dict` first; without
    a "format" entry it is read in the format-1 layout that code wrote before this type existed.
    """
    if not isinstance(ckpt, Checkpoint):
        ckpt = Checkpoint.from_dict({"format": OLD_FORMATS[0], **ckpt}, source="checkpoint to save")
    path = Path(path)
    try:
        _write_atomically(ckpt, path)
    except (OSError, RuntimeError) as err:  # a full disk, a read-only or vanished folder (torch.save: RuntimeError)
        raise UserError(
            f"could not write checkpoint {path} ({error_line(err, last=True, limit=200)}); an earlier {path.name} there is unchanged. Free disk space "
            "or make the folder writable; a training run then continues from its last saved epoch with --resume"
        ) from None
    return path


def _write_atomically(ckpt: Checkpoint, path: Path) -> None:
    """torch.save to a temporary beside `path`, fsync, then rename over it (core/atomic.py): a kill or a failed write
    at any moment leaves the earlier file whole (the temporary is removed, or later by `remove_stale_temporaries`)."""
    with AtomicOutput(path) as tmp, open(tmp, "wb") as f:
        torch.save(ckpt.to_dict(), f)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete `.NAME.*.tmp` files a killed save left in `folder`; call only while no one else writes there."""
    removed = []
    for tmp in Path(folder).glob(f".*.pt.*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint safely (weights_only=True); clear errors for missing, foreign or damaged files."""
    path = Path(path)
    if not path.is_file():
        from mnv3det.core.near_files import missing_checkpoint

        raise missing_checkpoint(path)
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle errors, truncated files, foreign formats
        # torch's own message advises weights_only=False, which would run code from the file: not shown.
        raise UserError(
            f"could not read checkpoint {path} ({type(err).__name__}): it is truncated, not a PyTorch file, or holds "
            "objects other than tensors and plain values (e.g. an Ultralytics .pt). Use a .pt written by `mnv3det train`."
        ) from None
    if not isinstance(raw, dict) or "format" not in raw:
        raise UserError(
            f"{path} is not an mnv3det checkpoint (no 'format: {FORMAT}' entry). "
            "Ultralytics/YOLOv5 .pt files cannot be read safely; train with mnv3det or load backbone weights "
            "with --backbone-weights."
        )
    return Checkpoint.from_dict(raw, source=str(path))


def load_state(module: nn.Module, state: Mapping[str, Tensor], source: str, what: str = "weights") -> None:
    """`module.load_state_dict(state)` with a one-line UserError when names or shapes do not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unknown = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unknown or wrong:
        example = (wrong or missing or unknown)[0]
        raise UserError(
            f"{source}: its {what} do not fit the model its recipe builds ({len(wrong)} tensors of another shape, "
            f"{len(missing)} missing, {len(unknown)} unknown; e.g. {example}): the file is damaged or was edited; "
            f"{WHAT_TO_DO}"
        )
    module.load_state_dict(state)


def nonfinite_weights(state: Mapping[str, Tensor]) -> tuple[int, int, str]:
    """(NaN/inf values, float values in all, the first tensor holding one or '') over a state_dict's tensors."""
    bad, total, first = 0, 0, ""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            continue  # BN's num_batches_tracked and other counters
        count = int(tensor.numel() - torch.isfinite(tensor).sum())
        bad, total = bad + count, total + tensor.numel()
        first = first or (name if count else "")
    return bad, total, first


def check_finite(state: Mapping[str, Tensor], source: str) -> None:
    """A one-line UserError when any weight of `state` is NaN or inf: such a model predicts nothing (or noise),
    silently; it comes from a run that diverged."""
    bad, total, first = nonfinite_weights(state)
    if bad:
        raise UserError(f"{source}: {bad} of {total} weight values are not finite (NaN or inf, e.g. in {first}): the "
                        "run that wrote it diverged. Use a checkpoint of an earlier epoch, or train again with a lower "
                        "lr0")
