"""Where third-party output goes while a command promises JSON only on stdout, and how children are started once a
library that runs threads is loaded.

`--json` (export, benchmark) means stdout holds one JSON document. Converters print progress of their own (nncf's
"Statistics collection" and "Applying Fast Bias correction" bars, OpenVINO's and pnnx's notes), through Python's
sys.stdout or straight to file descriptor 1 from C++. `stdout_to_stderr()` sends both to stderr for the duration of
the work; the command prints its JSON after it.

JAX (which LiteRT's converter and quantizer load) starts threads when imported, and a child made by `os.fork()`
after that may deadlock (JAX warns so). `spawn_children()` makes multiprocessing (and so torch's DataLoader workers
and any library's pool) start children fresh instead; called where the LiteRT packages are imported.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While inside, whatever is written to stdout (Python's sys.stdout and file descriptor 1) goes to stderr."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedded interpreter): the Python-level redirect still holds
        saved = None
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def spawn_children() -> None:
    """Make multiprocessing start children with `spawn` from now on (once JAX or another threaded runtime is
    loaded, a forked child may deadlock). Torch's DataLoader workers follow the default start method."""
    import multiprocessing

    if multiprocessing.get_start_method(allow_none=True) != "spawn":
        multiprocessing.set_start_method("spawn", force=True)
