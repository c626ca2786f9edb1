"""What a person reads: piped output is never cut at 80 columns, and the wording of results says what it means."""

from __future__ import annotations

import io

from rich.table import Table

from mnv3det.core.console import PIPE_WIDTH, make_console


def test_piped_output_is_not_wrapped(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console(file=io.StringIO())  # not a terminal: a pipe or a file
    assert not console.is_terminal and console.width == PIPE_WIDTH
    long_name = "runs/train/" + "a_long_folder_name_" * 8 + "/weights/best.pt"
    console.print(f"Results saved to {long_name}")
    table = Table("model", "format")
    table.add_row(long_name, "openvino-int8")
    console.print(table)
    text = console.file.getvalue()
    assert f"Results saved to {long_name}\n" in text  # one line, not broken mid-word
    assert "openvino-int8" in text and long_name in text  # the table keeps whole cells...
    assert max(len(line) for line in text.splitlines()) < 2 * len(long_name) + 40  # ...and only the width it needs


def test_a_terminal_or_columns_keeps_its_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert make_console(file=io.StringIO()).width == 60
    monkeypatch.delenv("COLUMNS")
    assert make_console(file=io.StringIO(), force_terminal=True, width=100).width == 100
