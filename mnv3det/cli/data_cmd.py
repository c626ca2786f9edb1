"""`mnv3det data check DATA`: the dataset doctor (a `data` sub-app, so more data commands can join it)."""

from __future__ import annotations

import json
from typing import Optional

import typer

from mnv3det.core.console import make_console
from mnv3det.cli.app import app, user_errors

data_app = typer.Typer(help="Inspect datasets: formats, counts and problems.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("check")
@user_errors
def check(
    data: Optional[str] = typer.Argument(None, help="Data yaml or dataset folder; leave out for the built-in demo set."),
    split: Optional[list[str]] = typer.Option(None, "--split", "-s", help="Split(s) to check (default: all)."),
    limit: int = typer.Option(50, help="Problems listed per split (0 = all)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable json only."),
    strict: bool = typer.Option(False, help="Exit with status 1 when any problem is found."),
) -> None:
    """Read every image header and label; print counts, boxes per class and every problem with its file and line.

    Exits with status 1 when `names` does not fit the labels (most boxes of a split dropped for their class,
    as training would refuse), or with --strict when any problem is found.
    """
    from mnv3det.data.doctor import check_data, print_reports
    from mnv3det.data.spec import load_data

    spec = load_data(data)
    reports = check_data(spec, split, progress=not as_json)
    if as_json:
        splits = [{**r.to_json(), "location": spec.location(r.split)} for r in reports]
        payload = {"data": str(spec.source), "format": spec.format, "names": spec.names, "notes": spec.notes,
                   "splits": splits}
        typer.echo(json.dumps(payload, indent=1))
    else:
        print_reports(spec, reports, make_console(), limit=limit or None)
    if any(r.mismatch for r in reports) or (strict and any(r.problems for r in reports)):
        raise typer.Exit(code=1)
