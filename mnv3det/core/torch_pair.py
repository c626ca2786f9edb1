"""A torch and a torchvision that do not belong together: one line naming both and the command that fixes it.

The usual way in: torch from PyTorch's CPU index beside torchvision from PyPI (or the other way round), built for
another torch. torchvision then fails on import or first use with `operator torchvision::nms does not exist`, deep
in a 40-line traceback. torchvision 0.N pairs with torch 2.(N - 15) (0.20 with 2.5, 0.29 with 2.14); both come
from the same wheel index, which the local version says (`+cpu`, `+cu121`; none: PyPI). Versions are read from the
installed packages' metadata, so asking imports neither.
"""

from __future__ import annotations

import re
from importlib import metadata

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
WHEEL_INDEX = "https://download.pytorch.org/whl/{tag}"  # cpu, cu121, cu130, ... (the local version of torch)
TORCHVISION_MINOR_OFFSET = 15  # torchvision 0.(m + 15) is built for torch 2.m


def installed_version(package: str) -> str | None:
    """The installed distribution's version ('2.5.1+cpu'), or None when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, int]:
    """'2.5.1+cpu' -> (2, 5)."""
    major, minor = (int(x) for x in re.findall(r"\d+", version)[:2])
    return major, minor


def _local(version: str) -> str:
    """'2.5.1+cpu' -> 'cpu'; '2.5.1' -> '' (a PyPI wheel)."""
    return version.partition("+")[2]


def versions_agree(torch_version: str, vision_version: str) -> bool:
    """False when the release table or the build (cpu / cuXXX) says the two were not made for each other."""
    try:
        (t_major, t_minor), (v_major, v_minor) = _release(torch_version), _release(vision_version)
    except ValueError:  # a version we cannot read: do not claim a mismatch
        return True
    if t_major == 2 and v_major == 0 and v_minor != t_minor + TORCHVISION_MINOR_OFFSET:
        return False
    t_local, v_local = _local(torch_version), _local(vision_version)
    return not (t_local and v_local and t_local != v_local)


def fix_command(torch_version: str) -> str:
    """Reinstall both from the index torch came from (its local version names it; none: PyPI)."""
    tag = _local(torch_version)
    index = f" --index-url {WHEEL_INDEX.format(tag=tag)}" if re.fullmatch(r"cpu|cu\d+|rocm[\d.]+", tag) else ""
    return f"pip install --force-reinstall torch torchvision{index}"


def mismatch_line(torch_version: str, vision_version: str) -> str:
    return (f"torch {torch_version} and torchvision {vision_version} do not belong together (torchvision's operators "
            f"were built for another torch); install both from one index: {fix_command(torch_version)}")


def is_operator_error(err: BaseException) -> bool:
    """torchvision's failure when its compiled ops do not match torch: `operator torchvision::nms does not exist`."""
    text = str(err)
    return "torchvision::" in text and "does not exist" in text


def pair_problem(err: BaseException | None = None) -> str | None:
    """The one line for a torch/torchvision mismatch, or None. With `err` (an exception raised while importing or
    using torchvision) only that error's kind counts, the versions are named; without, the versions alone decide."""
    torch_version, vision_version = installed_version("torch"), installed_version("torchvision")
    if torch_version is None or vision_version is None:
        return None
    if err is not None:
        return mismatch_line(torch_version, vision_version) if is_operator_error(err) else None
    return None if versions_agree(torch_version, vision_version) else mismatch_line(torch_version, vision_version)
