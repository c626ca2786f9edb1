"""SIGTERM as Ctrl-C: what schedulers, `docker stop` and `kill` send gets the same one line and the same clean-up.

    with sigterm_as_interrupt():     # the CLI wraps every command in it (cli/app.py)
        run()                        # a SIGTERM raises KeyboardInterrupt here, as Ctrl-C's SIGINT does

Without it Python dies on SIGTERM at once: no "interrupted ... continue with --resume" line, no temporaries
removed. Only the process that installed it raises: a forked DataLoader worker that inherits the handler ends
as SIGTERM's default would have ended it (its parent then reports the interruption).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM to this process raises KeyboardInterrupt (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def interrupt(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked child: the default action (end the process)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["sigterm_as_interrupt"]
