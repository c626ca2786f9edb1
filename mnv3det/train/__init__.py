"""Training: config, loop, state and resume, optimizer, EMA, DDP, loss and assigner, autoanchor, run plots.

The package itself is callable: `mnv3det.train(...)` runs `mnv3det.train.api.train(...)`. A plain function
cannot carry this name, because importing any `mnv3det.train.*` module sets the attribute `mnv3det.train`
to this package (Python's import system does that for every subpackage), replacing the function.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    """This package's module type: calling it trains (see `mnv3det.train.api.train`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from mnv3det.train.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
