"""`check_app`: compare an app's detections with the reference pipeline's and name the mistake that explains them.

    images DIR + predictions PRED -> AppBoxes per image (predictions.py)
    per image: the reference and every mistake (mistakes.py) -> match with the app's boxes (matching.py) -> Tally
    verdict: "agrees" (a reference fits and no mistake fits clearly better), "mistake" (one fits clearly better:
    named, with the evidence), or "differs" (none does)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnv3det.core.imgsz import ImgSize, ImgSizeLike
from mnv3det.deploy.check_app.matching import Tally, match
from mnv3det.deploy.check_app.mistakes import ImageRunner, Mistake, mistakes, references
from mnv3det.deploy.check_app.predictions import AppBoxes, list_images, read_predictions
from mnv3det.errors import UserError

CONF_MARGIN = 1e-4  # the inferred threshold sits this far below the app's lowest score (scores written rounded)
AGREE_SHARE = 0.9  # "agrees": the reference finds at least this share of the app's boxes and the app of its,
AGREE_IOU = 0.9  # at this mean IoU,
AGREE_SCORE = 0.05  # and this mean score difference (the float rule export verification uses)
EXPLAINS = 0.5  # a mistake is named when it at least halves the reference's disagreement,
EXPLAINS_BOXES = 1.0  # and by at least one box's worth


@dataclass
class Candidate:
    """One pipeline (a reference or a mistake) and how well its boxes explain the app's, over all images."""

    mistake: Mistake
    tally: Tally = field(default_factory=Tally)

    @property
    def key(self) -> str:
        return self.mistake.key

    @property
    def is_reference(self) -> bool:
        return self.key.startswith("reference")

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "says": self.mistake.says, **self.tally.as_dict()}


@dataclass
class ImageCheck:
    """The app against the reference on one image."""

    name: str
    tally: Tally

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.name, **self.tally.as_dict()}


@dataclass
class CheckAppResult:
    """What `check_app` found: the verdict, its one line, and the numbers behind it."""

    verdict: str  # "agrees" | "mistake" | "differs"
    line: str  # the one line for the user, with the evidence
    mistake: str | None  # the named mistake's key (verdict "mistake"), e.g. "stretch", "nms-iou-0.6"
    reference: Candidate  # the reference pipeline that fits the app best ("as exported")
    candidates: list[Candidate]  # every pipeline tried, best fit first
    images: list[ImageCheck]  # the app against `reference`, per image
    imgsz: ImgSize
    conf: float  # the score threshold both sides were compared at
    conf_from_app: bool  # True: inferred from the app's lowest score
    iou: float  # the reference's NMS IoU
    weights: Path
    predictions: Path
    notes: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return self.verdict == "agrees"

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "line": self.line, "mistake": self.mistake, "weights": self.weights,
                "predictions": self.predictions, "imgsz": [self.imgsz.h, self.imgsz.w], "conf": self.conf,
                "conf_from_app": self.conf_from_app, "iou": self.iou, "reference": self.reference.as_dict(),
                "images": [i.as_dict() for i in self.images], "candidates": [c.as_dict() for c in self.candidates],
                "notes": self.notes}

    def to_json(self, indent: int | None = None) -> str:
        from mnv3det.core.tables import to_json

        return to_json(self.as_dict(), indent)


def check_app(
    weights: str | Path,
    images: str | Path,
    predictions: str | Path,
    *,
    imgsz: ImgSizeLike | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> CheckAppResult:
    """Compare the detections an app wrote (`predictions`: a folder of YOLO txt files or a json, see
    predictions.py) for the images in `images` with what `weights` gives through mnv3det's own pipeline.

    imgsz: None = detect's size (the trained size; a static export's own). conf: None = just below the app's lowest
    score (so both sides keep the same boxes). iou, max_det: NMS as detect's defaults when None.
    """
    from mnv3det.core.device import select_device
    from mnv3det.deploy.runtime.backends import load_backend
    from mnv3det.deploy.runtime.predictor import NmsSettings, resolve_imgsz

    for option, value, low in (("--conf", conf, 0.0), ("--iou", iou, 0.0)):
        if value is not None and not low <= value < 1:
            raise UserError(f"{option} {value}: give a value from 0 up to (not including) 1")
    if max_det is not None and max_det < 1:
        raise UserError(f"--max-det {max_det}: give at least 1")
    weights, predictions = Path(weights), Path(predictions)
    files = list_images(Path(images))
    if not predictions.exists():
        raise UserError(f"--predictions {predictions}: no such file or folder; give the folder of YOLO txt files "
                        "or the json your app wrote")
    backend = load_backend(weights, select_device(device), threads, one_image=True)
    size, size_note = resolve_imgsz(backend, imgsz, weights)
    app = read_predictions(predictions, files, len(backend.names))
    defaults = NmsSettings()
    conf_from_app = conf is None
    if conf is None:  # the app's own threshold, as far as its boxes show it
        scores = [b.rows[:, 5].min() for b in app.values() if len(b.rows)]
        conf = max(float(min(scores)) - CONF_MARGIN, 0.0) if scores else defaults.conf
    nms = NmsSettings(conf=conf, iou=defaults.iou if iou is None else iou,
                      max_det=defaults.max_det if max_det is None else max_det)
    candidates = [Candidate(m) for m in references(backend.fixed_shape is not None) + mistakes(nms.iou)]
    per_image = _run(backend, files, app, size, nms, candidates)
    ranked = sorted(candidates, key=lambda c: c.tally.disagreement)  # stable: ties keep the table's order
    reference = min((c for c in candidates if c.is_reference), key=lambda c: c.tally.disagreement)
    verdict, line, named = _verdict(reference, ranked[0], nms.conf)
    notes = [size_note] if size_note else []
    if conf_from_app and any(len(b.rows) for b in app.values()):
        notes.append(f"compared at conf {conf:.4g}: just below your app's lowest score (set --conf to choose)")
        if abs(conf - defaults.conf) > 0.01:  # not a mistake (both sides use it), but worth knowing
            notes.append(f"your app keeps scores down to {conf + CONF_MARGIN:.4g}; detect keeps {defaults.conf:g} "
                         "and up by default")
    return CheckAppResult(verdict, line, named, reference, ranked, per_image[reference.key], size, conf,
                          conf_from_app, nms.iou, weights, predictions, notes)


def _run(backend: Any, files: dict[str, Path], app: dict[str, AppBoxes], size: ImgSize, nms: Any,
         candidates: list[Candidate]) -> dict[str, list[ImageCheck]]:
    """Every candidate pipeline on every image, matched with the app's boxes into the candidates' tallies;
    returns each reference pipeline's per-image checks."""
    per_image: dict[str, list[ImageCheck]] = {c.key: [] for c in candidates if c.is_reference}
    for name, path in files.items():
        runner = ImageRunner(backend, _read(path), size, nms)
        theirs = app[name].xyxy(int(runner.image.shape[0]), int(runner.image.shape[1]))
        for cand in candidates:
            m = match(theirs, runner(cand.mistake.steps))
            cand.tally.add(m)
            if cand.is_reference:
                one = Tally()
                one.add(m)
                per_image[cand.key].append(ImageCheck(name, one))
    return per_image


def _verdict(reference: Candidate, best: Candidate, conf: float) -> tuple[str, str, str | None]:
    """("agrees" | "mistake" | "differs", the one line, the mistake's key)."""
    ref, top = reference.tally, best.tally
    gain = ref.disagreement - top.disagreement
    if not best.is_reference and top.disagreement <= EXPLAINS * ref.disagreement and gain >= EXPLAINS_BOXES:
        line = (f"{best.mistake.says}: {best.mistake.evidence} the reference matches {_fit(top)}, against "
                f"{_fit(ref, short=True)} as exported")
        return "mistake", line, best.key
    if ref.app == 0 and ref.ref == 0:
        return "agrees", (f"agrees, but neither your app nor the reference found a box at conf {conf:.4g}: "
                          "compare at a lower threshold"), None
    if (ref.of_app >= AGREE_SHARE and ref.of_ref >= AGREE_SHARE and ref.mean_iou >= AGREE_IOU
            and ref.mean_score_diff <= AGREE_SCORE):
        missed = f"{ref.missed} box(es) your app does not" if ref.missed else "no box your app misses"
        return "agrees", f"{reference.mistake.says}: the reference matches {_fit(ref)} and finds {missed}", None
    line = (f"your app's boxes differ from the reference's (it matches {_fit(ref)}; {ref.missed} missed, "
            f"{ref.extra} extra), and none of the usual mistakes explains them better")
    if not best.is_reference:
        line += f" (closest: {best.key}, {_fit(top)})"
    return "differs", line, None


def _fit(t: Tally, short: bool = False) -> str:
    """'97% of your 120 boxes at mean IoU 0.95, score difference 0.012' (short: '41% at ...')."""
    boxes = "" if short else f" of your {t.app} boxes"
    if not t.app:
        return f"none of your 0 boxes (it finds {t.ref})"
    if not t.matched:
        return f"0%{boxes}"
    return (f"{100 * t.of_app:.0f}%{boxes} at mean IoU {t.mean_iou:.2f}, score difference "
            f"{t.mean_score_diff:.3f}")


def _read(path: Path):
    """The BGR image; an unreadable one is a UserError naming it."""
    from mnv3det.deploy.runtime.sources import UnreadableImage, read_image

    try:
        return read_image(path)
    except UnreadableImage as err:
        raise UserError(f"{path}: {err}") from None
