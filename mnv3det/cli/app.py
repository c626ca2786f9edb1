"""The Typer application object and the `command` decorator every CLI command uses.

Each command lives in its own module of this package and is registered with `@command()`.
The decorator turns a `UserError` into a red one-line message and exit status 2, so a user
never sees a traceback for something they can fix (also under Typer's CliRunner in tests), and
SIGTERM into Ctrl-C (`core.signals`), so both end a command with the same line.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import typer
from rich.markup import escape

from mnv3det.core.console import make_console
from mnv3det.core.signals import sigterm_as_interrupt
from mnv3det.core.torch_pair import pair_problem
from mnv3det.errors import Interrupted, UserError, cli_spelling, error_line

app = typer.Typer(
    name="mnv3det",
    help="Train, evaluate, run and export YOLOv5 detectors with MobileNetV3 backbones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err_console = make_console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _print_version(value: bool) -> None:
    if value:
        from mnv3det import __version__

        typer.echo(f"mnv3det {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """Train, evaluate, run and export YOLOv5 detectors with MobileNetV3 backbones."""


def user_errors(fn: F) -> F:
    """Wrap a command so a `UserError` becomes a red message on stderr and exit status 2, its options spelled as
    the command line spells them (`mnv3det.errors.option`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        try:
            # SIGTERM (schedulers, docker stop) ends a command as Ctrl-C does; messages name options as `--split`
            with sigterm_as_interrupt(), cli_spelling():
                mismatch = pair_problem()  # from the packages' metadata, before torchvision is imported
                if mismatch:
                    raise UserError(mismatch)
                return fn(*args, **kw)
        except UserError as err:
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)  # user text: no markup
            raise typer.Exit(code=2) from None
        except Interrupted as err:  # Ctrl-C where the work knows what it left behind: that one line
            err_console.print(escape(str(err)), highlight=False, soft_wrap=True)
            raise typer.Exit(code=130) from None
        except (MemoryError, RuntimeError) as err:  # torch's OutOfMemoryError is a RuntimeError
            mismatch = pair_problem(err) if isinstance(err, RuntimeError) else None
            if mismatch:  # torchvision built for another torch: which versions, and the command that fixes it
                err_console.print(f"[bold red]error:[/] {escape(mismatch)}", highlight=False, soft_wrap=True)
                raise typer.Exit(code=2) from None
            if not is_out_of_memory(err):
                raise
            err_console.print(
                f"[bold red]error:[/] out of memory ({escape(error_line(err, limit=300))}). Try a smaller --imgsz or --batch, or free "
                "memory; a stopped training continues from its last epoch with --resume.", highlight=False, soft_wrap=True,
            )
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def is_out_of_memory(err: BaseException) -> bool:
    """True for a failed allocation: Python's MemoryError, torch's (CUDA) OutOfMemoryError or its CPU allocator's
    RuntimeError ("can't allocate memory"). A user fixes these by asking for less, so they get a message, not a
    traceback."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def command(name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register `fn` as `mnv3det NAME` with `user_errors` applied."""

    def decorate(fn: F) -> F:
        app.command(name=name, **kwargs)(user_errors(fn))
        return fn

    return decorate
