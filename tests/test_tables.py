"""Tables that read (issue 18, defect 11): fixed decimals per column, text left-aligned, titles never broken mid-word,
`doctor` saying each thing once, `bench` one line per skip reason."""

from __future__ import annotations

import re

from cunet.cli import main
from cunet.commands._common import format_cell, print_table


def _cells(err: str, first: str) -> list[str]:
    line = next(line for line in err.splitlines() if line.startswith("│") and first in line)
    return [c for c in line.strip("│").split("│")]


def test_a_column_gets_one_number_of_decimals_and_text_is_left_aligned(capsys):
    print_table("t", ["what", "NME %", "note"], [("a", 0.009563, "short"), ("b", 0.0, "a longer note"),
                                                 ("c", float("nan"), "x")])
    err = capsys.readouterr().err
    a, b, c = _cells(err, " a "), _cells(err, " b "), _cells(err, " c ")
    assert a[1].strip() == "0.010" and b[1].strip() == "0.000" and c[1].strip() == "—"
    assert a[1].endswith("0.010 ") and len(a[1]) == len(b[1])  # numbers right-aligned in one column
    assert a[2].startswith(" short") and b[2].startswith(" a longer note")  # text left-aligned
    assert format_cell(16.1, 2) == "16.10" and format_cell(17.03, 2) == "17.03" and format_cell(12345) == "12,345"


def test_a_long_title_is_never_broken_mid_word(capsys):
    title = "runs/face-experiment-with-a-long-name/model.int8-tensorrt.onnx · ort-cpu (CPUExecutionProvider)"
    print_table(title, ["", "batch 1"], [("p50 (ms)", 12.5)])
    err = capsys.readouterr().err
    assert title in err.splitlines()[0]


def test_doctor_is_left_aligned_and_says_tensorrt_once(capsys):
    assert main(["doctor"]) == 0
    err = capsys.readouterr().err
    torch_cells = _cells(err, " torch ")
    assert torch_cells[1].startswith(" ") and not torch_cells[1].startswith("  ")  # left-aligned value
    assert not re.search(r"\([^()]*\(", err)  # no nested parentheses
    if "not installed" in err:
        assert err.count("pip install 'cunet[gpu]'") == 1


def test_bench_prints_one_line_per_skip_reason(capsys):
    from cunet.pipeline.bench_output import print_rows as _print_table

    def row(name, reason):
        return {"artifact": name, "status": "skipped" if reason else "ok", "size_mb": 1.0, "value": 3.0,
                "delta": 0.0, "p50_ms": 1.0, "p99_ms": 2.0, "throughput": 100.0, "peak_mb": 10.0, "reason": reason}

    rows = [row("onnx-fp32", None)] + [row(f"tensorrt-{p}", "no TensorRT/GPU: not installed") for p in
                                       ("fp32", "fp16", "int8")]
    _print_table(rows, "nme", "onnx-fp32", calib=(1, 8))
    err = capsys.readouterr().err
    assert err.count("no TensorRT/GPU: not installed") == 1
    assert "tensorrt-fp32, tensorrt-fp16, tensorrt-int8: no TensorRT/GPU" in err
    assert "calibrated on 1 image(s), 8 requested" in err
