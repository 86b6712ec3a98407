"""Temporary folders of killed runs: a real cunet process is killed (SIGKILL: no cleanup runs) while it holds one,
and the next `cunet` start removes it, and only it: folders without a marker, of a live owner, of another host or
without the `cunet-` prefix stay.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cunet.tempdirs import MARKER, owner_alive, owner_record, sweep, temp_dir

#: A cunet process that makes a quantization folder, puts a file in it, says where, and waits to be killed.
CHILD = """
import time
from cunet.tempdirs import temp_dir
with temp_dir("quant") as folder:
    (folder / "int8.onnx").write_bytes(b"half-written model")
    print(folder, flush=True)
    time.sleep(120)
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="owner start times come from /proc")


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp)}


def _folder(root: Path, name: str, record: dict | None) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "data.bin").write_bytes(b"x")
    if record is not None:
        (folder / MARKER).write_text(json.dumps(record), encoding="utf-8")
    return folder


def _dead_pid_record() -> dict:
    """The owner record of a process that has exited (recorded while it ran)."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    record = owner_record(proc.pid)
    proc.communicate(b"")
    return record


def test_a_killed_runs_folder_is_removed_at_the_next_start(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=_env(tmp_path), stdout=subprocess.PIPE, text=True)
    try:
        killed = Path(child.stdout.readline().strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert killed.parent == tmp_path and killed.name.startswith("cunet-quant-")
    assert (killed / "int8.onnx").is_file()  # SIGKILL: the `with` block never cleaned up
    assert json.loads((killed / MARKER).read_text())["pid"] == child.pid

    me = owner_record()
    recycled = {**me, "start": me["start"] - 1}  # this PID, but a process that started earlier: not us
    kept = {
        "no marker": _folder(tmp_path, "cunet-calib-nomarker", None),
        "unreadable marker": _folder(tmp_path, "cunet-calib-torn", None),
        "live owner": _folder(tmp_path, "cunet-ops-live", me),
        "another host": _folder(tmp_path, "cunet-trt-elsewhere", {**_dead_pid_record(), "host": "elsewhere"}),
        "not cunet's": _folder(tmp_path, "other-quant-x", _dead_pid_record()),
    }
    (kept["unreadable marker"] / MARKER).write_text('{"pid": 12', encoding="utf-8")
    gone = {"killed run": killed, "dead owner": _folder(tmp_path, "cunet-ir-dead", _dead_pid_record()),
            "recycled pid": _folder(tmp_path, "cunet-nncf-recycled", recycled)}

    start = subprocess.run([sys.executable, "-m", "cunet", "--version"], env=_env(tmp_path), capture_output=True,
                           text=True, timeout=120)
    assert start.returncode == 0, start.stderr
    assert {k: p.exists() for k, p in gone.items()} == dict.fromkeys(gone, False)
    assert {k: (p / "data.bin").is_file() for k, p in kept.items()} == dict.fromkeys(kept, True)


def test_temp_dir_carries_its_marker_and_is_removed_on_exit(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # tempfile caches the directory it chose
    with pytest.raises(RuntimeError):
        with temp_dir("quant") as folder:
            assert folder.parent == tmp_path and json.loads((folder / MARKER).read_text()) == owner_record()
            raise RuntimeError("a failing step")
    assert not folder.exists()
    assert owner_alive(owner_record()) and sweep(tmp_path) == []


def test_a_symlink_is_never_followed(tmp_path):
    target = _folder(tmp_path, "precious", _dead_pid_record())
    (tmp_path / "cunet-quant-link").symlink_to(target)
    assert sweep(tmp_path) == [] and (target / "data.bin").is_file()
