"""The Python API: what the CLI commands do, for people who call mnv3det from code.

    import mnv3det

    detector = mnv3det.load("runs/train/exp/weights/best.pt")      # or best.onnx, best.torchscript
    result = detector.predict("street.jpg")                         # a path, a BGR array, a PIL image, or a list
    result.save("street_pred.jpg")                                  # .plot() -> the annotated BGR array
    for box, score, name in zip(result.boxes, result.scores, result.labels):
        print(name, round(float(score), 2), box)                    # box: x1, y1, x2, y2 in image pixels

    metrics = mnv3det.val("best.pt", data="data.yaml")              # EvalResult: .map, .map50, .per_class, ...
    exported = mnv3det.export("best.pt", format="onnx")             # ExportResult: .path, .passed, .to_json()
    report = mnv3det.benchmark("best.pt", formats="onnx,openvino")  # BenchReport: .rows, .to_df()
    check = mnv3det.check_app("best.onnx", "imgs/", "app_out/")     # CheckAppResult: .verdict, .line

Arrays are taken as OpenCV gives them (H, W, 3) uint8 BGR; a PIL image is converted from RGB. Every call goes
through the same prediction path as `mnv3det detect` and `mnv3det val`, so the numbers agree with the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from mnv3det.core.console import make_console
from mnv3det.core.imgsz import ImgSize, ImgSizeLike
from mnv3det.evaluate.config import ValConfig

ImageInput = Union[str, Path, np.ndarray, Any]  # a path, a BGR uint8 array (H, W, 3) or a PIL image


@dataclass
class Detections:
    """The boxes found in one image (numpy arrays, original-image pixels), with the image they were found in."""

    boxes: np.ndarray  # float32 (n, 4) x1, y1, x2, y2
    scores: np.ndarray  # float32 (n,) obj x class probability (an anchor-free head: its class score)
    classes: np.ndarray  # int64 (n,) class indices
    names: list[str]  # the model's class names (index -> name)
    image_shape: tuple[int, int]  # (height, width) of the image
    speed_ms: dict[str, float]  # preprocess, inference, nms for this image
    image: np.ndarray | None = field(default=None, repr=False)  # the BGR uint8 (H, W, 3) image, for plot/save
    path: Path | None = None  # the image file, when predict was given a path

    @property
    def labels(self) -> list[str]:
        """The class name of each box."""
        return [self.names[int(c)] for c in self.classes]

    def __len__(self) -> int:
        return len(self.boxes)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per box: x1, y1, x2, y2 (pixels), score, class (index), name."""
        return [{"x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2), "score": float(score),
                 "class": int(cls), "name": self.names[int(cls)]}
                for (x1, y1, x2, y2), score, cls in zip(self.boxes, self.scores, self.classes)]

    def plot(self, *, labels: bool = True, conf: bool = True, line_width: int | None = None) -> np.ndarray:
        """The image with every box drawn as `mnv3det detect` draws it: a new BGR uint8 (H, W, 3) array.
        labels=False draws boxes only (detect's --hide-labels); conf=False labels boxes with the class name only
        (--hide-conf); line_width: one width for every box (None: by image size, thinner on small boxes)."""
        from mnv3det.deploy.runtime.annotate import draw_detections
        from mnv3det.errors import UserError

        if self.image is None:
            raise UserError("these Detections hold no image to draw on; get them from Detector.predict(...)")
        if line_width is not None and line_width < 1:
            raise UserError(f"plot(line_width={line_width}): must be 1 or more (None scales it with the boxes)")
        rows = np.c_[self.boxes, self.scores, self.classes].astype(np.float64)  # (n, 6) as detect draws them
        return draw_detections(self.image, rows, self.names, show_conf=conf, line_width=line_width,
                               show_labels=labels)

    def save(self, path: str | Path, **plot_options: Any) -> Path:
        """Write `plot()` to `path` (.jpg, .jpeg, .png or .bmp; folders are made); returns the path."""
        import cv2

        from mnv3det.errors import UserError

        path = Path(path)
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp"):
            raise UserError(f"save({str(path)!r}): give a .jpg, .jpeg, .png or .bmp file name")
        ok, data = cv2.imencode(path.suffix, self.plot(**plot_options))
        if not ok:
            raise UserError(f"save({str(path)!r}): OpenCV could not encode the image")
        path.parent.mkdir(parents=True, exist_ok=True)
        data.tofile(str(path))  # tofile handles non-ASCII paths, unlike cv2.imwrite
        return path

    def to_json(self, indent: int | None = None) -> str:
        """{"path", "image_shape": [h, w], "speed_ms", "detections": rows()} as json."""
        from mnv3det.core.tables import to_json

        return to_json({"path": self.path, "image_shape": list(self.image_shape), "speed_ms": self.speed_ms,
                        "detections": self.rows()}, indent)

    def to_df(self) -> Any:
        """`rows()` as a pandas DataFrame: x1, y1, x2, y2, score, class, name (needs pandas)."""
        from mnv3det.core.tables import to_dataframe

        return to_dataframe(self.rows(), ["x1", "y1", "x2", "y2", "score", "class", "name"], "Detections")


class Detector:
    """A loaded model (.pt checkpoint or export) that finds objects in images; see `load`."""

    def __init__(self, backend: Any, imgsz: ImgSize, conf: float = 0.25, iou: float = 0.45):
        self.backend = backend
        self.imgsz = imgsz  # the size images are letterboxed to (the trained size unless asked otherwise)
        self.conf, self.iou = conf, iou

    @property
    def names(self) -> list[str]:
        return list(self.backend.names)

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int = 300,
        classes: Sequence[int] | None = None,
    ) -> Detections | list[Detections]:
        """Detections for one image, or a list of them for a list of images (each run on its own, as `detect` does)."""
        from mnv3det.core.nms_checks import check_nms_values
        from mnv3det.deploy.runtime.predictor import NmsSettings, predict

        single = not isinstance(images, (list, tuple))
        conf, iou = self.conf if conf is None else conf, self.iou if iou is None else iou
        check_nms_values(conf=conf, iou=iou, max_det=max_det, classes=classes, names=self.names, style="api")
        nms = NmsSettings(conf=conf, iou=iou, max_det=max_det, classes=tuple(classes) if classes is not None else None)
        out = []
        for image in [images] if single else images:
            array = _as_bgr(image)
            prediction = predict(self.backend, [array], imgsz=self.imgsz, nms=nms)
            det = prediction.detections[0].numpy()
            out.append(Detections(
                boxes=det[:, :4].astype(np.float32), scores=det[:, 4].astype(np.float32),
                classes=det[:, 5].astype(np.int64), names=self.names, image_shape=array.shape[:2],
                speed_ms=prediction.speed_ms, image=array,
                path=Path(image) if isinstance(image, (str, Path)) else None,
            ))
        return out[0] if single else out

    __call__ = predict

    def __repr__(self) -> str:
        return f"Detector({len(self.names)} classes, imgsz {self.imgsz}, {type(self.backend).__name__})"


def load(
    weights: str | Path,
    *,
    device: str | None = None,
    imgsz: ImgSizeLike | None = None,
    conf: float = 0.25,
    iou: float = 0.45,
    threads: int | None = None,
) -> Detector:
    """Open a .pt checkpoint or an exported file as a Detector.

    imgsz: None = the size the model was trained at (a static export: its own size). device: None = a GPU when
    there is one. threads: CPU threads, None = the cores this process may use (1 for a .pt/.torchscript on CPU:
    one image per forward is fastest on one thread, see `mnv3det.core.threads`).
    """
    from mnv3det.core.device import select_device
    from mnv3det.core.nms_checks import check_nms_values
    from mnv3det.deploy.runtime.backends import load_backend
    from mnv3det.deploy.runtime.predictor import resolve_imgsz, warmup

    check_nms_values(conf=conf, iou=iou, max_det=1, style="api")  # before the model is opened
    backend = load_backend(weights, select_device(device), threads, one_image=True)
    size, _ = resolve_imgsz(backend, imgsz, weights)
    warmup(backend, size)
    return Detector(backend, size, conf=conf, iou=iou)


def val(weights: str | Path | ValConfig, data: str | None = None, *, verbose: bool = False, **options: Any):
    """Evaluate `weights` on a split of `data` as `mnv3det val` does (None = the data a .pt was trained on when it
    still exists, else the built-in demo set).

    options: any field of `mnv3det.evaluate.config.ValConfig` (imgsz, batch, conf, iou, split, plots, save_json,
    project, name, ...); or pass a ValConfig as `weights`. Writes the run folder like the CLI; returns the
    `EvalResult` (`.map`, `.map50`, `.per_class`, ..., and `.save_dir`). verbose: print the tables.
    """
    from mnv3det.evaluate.runner import run_val

    config = weights if isinstance(weights, ValConfig) else ValConfig(weights=Path(weights), data=data, **options)
    result, _ = run_val(config, make_console() if verbose else make_console(quiet=True))
    return result


def export(
    weights: str | Path,
    *,
    format: str | None = None,  # noqa: A002 (the CLI's option name)
    imgsz: ImgSizeLike | None = None,
    batch: int | None = None,
    dynamic: bool | None = None,
    opset: int | None = None,
    simplify: bool | None = None,
    half: bool | None = None,
    device: str | None = None,
    output: str | Path | None = None,
    image: str | Path | None = None,
    data: str | Path | None = None,
    calib_images: int | None = None,
    int8_max_drop: float | None = None,
    nms: bool | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    runs: int | None = None,
    threads: int | None = None,
    verbose: bool = False,
) -> Any:
    """Export a .pt checkpoint as `mnv3det export` does, with its option names (ExportConfig's fields; None keeps
    the CLI's default). verbose: print progress lines. Returns the verified ExportResult (`.path`, `.passed`,
    `.as_dict()`, `.to_json()`); an --nms file's outputs are final detections (`mnv3det.load` runs it too).
    """
    from mnv3det.deploy.config import ExportConfig
    from mnv3det.deploy.export.pipeline import export_checkpoint

    given = dict(format=format, imgsz=imgsz, batch=batch, dynamic=dynamic, opset=opset, simplify=simplify, half=half,
                 device=device, output=Path(output) if output else None, image=Path(image) if image else None,
                 data=data, calib_images=calib_images, int8_max_drop=int8_max_drop, nms=nms, conf=conf, iou=iou,
                 max_det=max_det, runs=runs, threads=threads)
    config = ExportConfig(**{k: v for k, v in given.items() if v is not None})
    return export_checkpoint(weights, config, console=make_console() if verbose else None)


def benchmark(
    weights: str | Path,
    *,
    data: str | Path | None = None,
    formats: str | Sequence[str] | None = None,
    imgsz: int | None = None,
    threads: int | None = None,
    runs: int | None = None,
    rounds: int | None = None,
    calib_images: int | None = None,
    nms: bool = False,
    max_images: int | None = None,
    reference: bool = True,
    project: str | Path | None = None,
    name: str | None = None,
    exist_ok: bool = False,
    verbose: bool = False,
) -> Any:
    """Export `weights` to every format (or `formats`), score each on val and time it, as `mnv3det benchmark` does.

    formats: a list or the CLI's comma-separated text (None: every available one); max_images: score on the first N
    val images (a quick answer); the other options as in the CLI, None keeping its defaults. Writes the run folder;
    returns the BenchReport (`.rows`, `.save_dir`, `.to_json()`, `.to_df()`). verbose: print what runs.
    """
    from dataclasses import replace

    from mnv3det.deploy.benchmark import BenchOptions, run_benchmark

    if isinstance(formats, str):
        formats = formats.split(",")
    given = {"threads": threads, "runs": runs, "rounds": rounds, "calib_images": calib_images,
             "project": Path(project) if project is not None else None, "name": name}
    opts = replace(BenchOptions(weights=Path(weights)), data=str(data) if data is not None else None,
                   formats=[f.strip().lower() for f in formats if f.strip()] if formats else None, imgsz=imgsz,
                   max_images=max_images, reference=reference, nms=nms, exist_ok=exist_ok,
                   **{k: v for k, v in given.items() if v is not None})
    say = (lambda text: make_console(stderr=True).print(text, highlight=False)) if verbose else (lambda text: None)
    report, _ = run_benchmark(opts, say=say)
    return report


def _as_bgr(image: ImageInput) -> np.ndarray:
    """A BGR uint8 (H, W, 3) array from a path, an array (taken as BGR) or a PIL image (converted as a file of the
    same mode is: `data.imageio.pil_to_bgr`); sizes the decoder refuses (`size_problem`) are a UserError."""
    from mnv3det.data import imageio
    from mnv3det.errors import UserError

    if isinstance(image, (str, Path)):
        from mnv3det.deploy.runtime.sources import UnreadableImage, read_image

        try:
            return read_image(Path(image))
        except UnreadableImage as err:
            raise UserError(f"{image}: {err}") from None
    try:
        if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
            return imageio.check_array(imageio.pil_to_bgr(image), "the PIL image")
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
            raise UserError(f"expected an image array (H, W, 3) uint8, got {array.dtype} {tuple(array.shape)}")
        return np.ascontiguousarray(imageio.check_array(array, "the image array")[..., :3])
    except imageio.UnreadableImage as err:
        raise UserError(f"{err.path}: {err.reason}") from None


__all__ = ["load", "val", "export", "benchmark", "Detector", "Detections"]  # and mnv3det.check_app (deploy/check_app)
