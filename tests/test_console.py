"""What cunet prints holds user paths: a `[x]` in one of them is text, never a rich style tag."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

import cunet
from cunet.console import console

PACKAGE = Path(cunet.__file__).parent


def test_console_prints_brackets_verbatim(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    console().print("wrote /tmp/a[bold]x[/bold]/model.onnx [x]")
    assert "wrote /tmp/a[bold]x[/bold]/model.onnx [x]" in buf.getvalue()


def test_every_rich_console_is_built_without_markup():
    """By construction: every `Console(...)` in the package passes `markup=False` (a new one without it fails here)."""
    built = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Console":
                markup = [k for k in node.keywords if k.arg == "markup"]
                built.append((f"{path.relative_to(PACKAGE)}:{node.lineno}",
                              bool(markup) and isinstance(markup[0].value, ast.Constant) and markup[0].value.value is False))
    assert built, "no rich Console found: the walk is broken"
    assert [where for where, off in built if not off] == []


def test_a_command_prints_a_bracketed_path_whole(tmp_path):
    """`compare` names each report by its path: `m[x]/a.json` printed as `m/a.json` before markup was turned off."""
    folder = tmp_path / "m[x]"
    folder.mkdir()
    report = '{"rows": [{"artifact": "onnx-fp32", "nme": 2.0, "p50_ms": 3.0}], "environment": {"device": "cpu"}}'
    for name in ("a.json", "b.json"):
        (folder / name).write_text(report)
    res = subprocess.run([sys.executable, "-m", "cunet", "compare", str(folder / "a.json"), str(folder / "b.json")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"{folder / 'a.json'} · cpu" in res.stderr
