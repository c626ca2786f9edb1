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


def test_the_problem_tables_of_a_dataset_are_shown_once_then_counted_in_one_line(tmp_path, monkeypatch):
    import mnv3det.data.report as report
    from mnv3det.data import load_data
    from tests.test_data_formats import write_yolo

    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))
    tiny = [("a.png", 64, 48, [(0, 10, 10, 11, 11), (1, 4, 6, 30, 40)])]  # a 1x1 px box: a tiny_box problem
    data = write_yolo(tmp_path / "set", images=tiny)

    def load_and_capture() -> str:
        out = io.StringIO()
        monkeypatch.setattr(report, "console", make_console(file=out))
        load_data(data).records("train")  # a fresh DataSpec, as a new command would make
        return out.getvalue()

    first = load_and_capture()
    assert "problems in 'train'" in first and "tiny_box" in first  # the tables
    again = load_and_capture()
    assert len(again.strip().splitlines()) == 1, again
    assert "1 problem(s) as before (1 tiny_box)" in again and f"mnv3det data check {data}" in again
    write_yolo(tmp_path / "set", images=[("a.png", 64, 48, [(0, 10, 10, 11, 11), (1, 20, 20, 21, 21)])])
    assert "problems in 'train'" in load_and_capture()  # other problems: the tables again


def test_an_int8_change_in_map_says_which_way_it_went():
    from mnv3det.deploy.export.report import _quantization_rows
    from mnv3det.deploy.export.wording import map_change_text

    assert map_change_text(0.5000, 0.4915) == "lost 0.85 points"
    assert map_change_text(0.4915, 0.5000) == "gained 0.85 points"
    assert map_change_text(0.5, 0.50001) == "unchanged"
    q = {"method": "nncf", "calibration_images": 4, "calibration_split": "train", "head_convs": "float",
         "map50_95_float": 0.5, "map50_95_int8": 0.4915, "map50_float": 0.7, "map50_int8": 0.69, "val_images": 6}
    row = dict(_quantization_rows(q))["mAP50-95 (val)"]
    assert "lost 0.85 points on 6 images" in row and "drop" not in row and "+0.85" not in row


def test_a_passing_export_check_does_not_read_like_a_failure():
    from mnv3det.deploy.export.wording import raw_diff_text

    ok = raw_diff_text(True, 3.2e-4, 1e-4, rel_diff=1.1e-5, excess=-1e-5)
    assert ok.startswith("[green]ok[/]: |diff| <= 0.0001 + 0.0001 x |PyTorch value| on every output")
    assert "largest |diff| 3.2e-04, relative 1.1e-05" in ok and "tolerance" not in ok
    bad = raw_diff_text(False, 3.2e-1, 1e-4, excess=0.3)
    assert bad.startswith("[red]MISMATCH[/]: outputs break") and "by up to 3.0e-01" in bad


def test_profile_explains_its_vs_std_conv_column():
    from typer.testing import CliRunner

    from mnv3det.cli import app

    result = CliRunner().invoke(app, ["profile", "--imgsz", "64", "--runs", "0"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("vs std conv*" in line for line in lines[:4])  # the header carries the mark...
    assert any(line.startswith("* vs std conv: the block's MACs / the MACs of one standard k x k conv") for line in lines)
