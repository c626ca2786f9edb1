"""Which runtime opens an exported file or folder: `load_backend` asks it for what `backends.BACKENDS` (.pt, .onnx,
.torchscript) does not open; the export pipeline and the timing worker ask it for every exported format.

Each runtime is a module here with `Backend(path, device, threads)` (the Backend protocol) and
`runner(path, threads) -> (run, input shape)` (the raw runtime call, for the timing worker). Its packages are
imported only when a model of its kind is opened; a missing one is a one-line error naming the extra.
Adding a runtime means adding its module and one row below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mnv3det.core.extras import require


@dataclass(frozen=True)
class Runtime:
    """One runtime: its module under mnv3det.deploy.runtime and the files it opens."""

    key: str  # the module name, and the --format name the missing-package line names ("openvino")
    name: str  # for tables ("OpenVINO")
    packages: tuple[tuple[str, str], ...]  # (import name, extra that installs it)
    suffixes: tuple[str, ...]  # files it opens (".xml"); a folder holding one (`folder_glob`) opens too
    folder_glob: str | None = None  # "*.xml": an exported folder (best_openvino_model/)

    def load(self) -> ModuleType:
        """The implementing module; a clear one-line error naming the extra when a package is missing."""
        require(self.packages, f"--format {self.key}")
        return importlib.import_module(f"mnv3det.deploy.runtime.{self.key}")

    def opens(self, path: Path) -> bool:
        """Whether `path` (an existing file or folder) is a model of this runtime."""
        if path.suffix.lower() in self.suffixes:
            return True
        return self.folder_glob is not None and path.is_dir() and any(path.glob(self.folder_glob))


RUNTIMES: dict[str, Runtime] = {
    r.key: r
    for r in (
        Runtime("onnx", "onnxruntime", (("onnxruntime", "export"),), (".onnx",)),
        Runtime("openvino", "OpenVINO", (("openvino", "edge"),), (".xml",), "*.xml"),
        Runtime("ncnn", "ncnn", (("ncnn", "edge"),), (".param",), "*.ncnn.param"),
        Runtime("litert", "LiteRT", (("ai_edge_litert", "litert"),), (".tflite",)),
        Runtime("coreml", "Core ML", (("coremltools", "coreml"),), (".mlpackage",)),
    )
}


def runtime_for(path: Path) -> Runtime | None:
    """The runtime of an exported file or folder (or of a file inside one); None when none opens it."""
    if not path.exists():
        return None
    return next((r for r in RUNTIMES.values() if r.opens(path)), None)
