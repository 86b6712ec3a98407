"""Nothing lost: `cunet.io` atomic writes keep the previous file through a SIGKILL, write durably, and give artifacts
normal permissions.

The kill tests run a real child Python process that writes through `cunet.io.atomic_write` / `save_checkpoint` and
is SIGKILLed at a known point in the middle of the write (it says where it is on stdout, then waits), so the
result does not depend on timing luck.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cunet.errors import CunetError
from cunet.io import atomic_write, write_bytes, write_json, write_text

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions, signals and /proc")


# ------------------------------------------------------------------------------------------------- permissions
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
@pytest.mark.parametrize("writer", ["write_bytes", "write_text", "write_json"])
def test_artifacts_get_the_permissions_a_plain_open_gives(tmp_path, umask, writer):
    """Guards the 0o666-under-umask temp file: with mkstemp every artifact came out 0o600, unreadable to a team."""
    write = {"write_bytes": lambda p: write_bytes(p, b"x"), "write_text": lambda p: write_text(p, "x"),
             "write_json": lambda p: write_json(p, {"x": 1})}[writer]
    old = os.umask(umask)
    try:
        write(tmp_path / "artifact")
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "artifact").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_replacing_keeps_normal_permissions_and_leaves_no_temp(tmp_path):
    """A rewrite also ends with umask permissions, and only the artifact is left in the folder."""
    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "m.onnx", b"one")
        write_bytes(tmp_path / "m.onnx", b"two")
    finally:
        os.umask(old)
    assert (tmp_path / "m.onnx").read_bytes() == b"two"
    assert stat.S_IMODE((tmp_path / "m.onnx").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


# -------------------------------------------------------------------------------------------------- durability
def test_data_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """Guards durability: the temp file's bytes must reach the disk before the rename (else a power cut can leave
    an empty file under the final name), and the directory after it (else the rename itself can be lost).
    The spies call through to the real os functions; they only record the order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name file descriptors")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "report.json"
    write_json(target, {"nme": 3.1})
    kinds = [k for k, _ in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert Path(events[0][1]).parent == tmp_path and events[0][1] != str(target)  # the temp file, before the rename
    assert events[1][1] == str(target) and events[2][1] == str(tmp_path)  # then the folder


def test_an_error_inside_the_block_keeps_the_previous_file(tmp_path):
    """A writer that fails half-way (here a CunetError mid-export) leaves the old artifact and no temp file."""
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(CunetError):
        with atomic_write(target) as f:
            f.write(b"half of the new mo")
            raise CunetError("verification failed")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


# ---------------------------------------------------------------------------------------------- kill mid-write
def _spawn(code: str, *args: str, cwd: Path) -> subprocess.Popen:
    # cwd outside the checkout: `python -c` puts the cwd first on sys.path, the child must import the installed cunet.
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def _kill_when(proc: subprocess.Popen, marker: str) -> None:
    line = proc.stdout.readline()
    if marker not in line:
        proc.kill()
        raise AssertionError(f"child did not reach {marker!r}: {line!r} {proc.communicate()[1][-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_write_keeps_the_previous_artifact(tmp_path, tally):
    """Guards atomic replace: a child writing a 16 MB artifact is SIGKILLed after the first 8 MB. The previous file
    must be byte-identical, nothing but hidden temp litter may appear, and the next write must work."""
    target = tmp_path / "model.onnx"
    previous = os.urandom(1 << 20)
    write_bytes(target, previous)
    proc = _spawn(
        """
        import sys, time
        from cunet.io import atomic_write
        with atomic_write(sys.argv[1]) as f:
            f.write(b"N" * (8 << 20))
            f.flush()
            print("half written", flush=True)
            time.sleep(60)
            f.write(b"N" * (8 << 20))
        """,
        str(target),
        cwd=tmp_path,
    )
    _kill_when(proc, "half written")
    tally["kill: atomic_write"] += 1
    assert target.read_bytes() == previous
    litter = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(name.startswith(".model.onnx.tmp-") for name in litter), litter  # hidden, never the artifact's name
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["model.onnx"]
    write_bytes(target, b"next")
    assert target.read_bytes() == b"next"


def test_sigkill_mid_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, tally):
    """Guards `save_checkpoint` going through the atomic writer: the child is stopped inside the very file write of
    a new checkpoint (a profile hook pauses it after the first bytes reach a real file in the run folder) and
    SIGKILLed. The old checkpoint must still load with the old weights."""
    import torch

    from cunet.model.checkpoint import load_checkpoint, model_from_checkpoint

    run = tmp_path / "run"
    ckpt = run / "last.pt"
    child = """
        import io, os, sys, time
        import torch
        from cunet.model import CUNet, CUNetConfig
        from cunet.model.checkpoint import save_checkpoint

        run = os.path.realpath(sys.argv[1])
        cfg = CUNetConfig(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)
        torch.manual_seed(int(sys.argv[3]))
        model = CUNet(cfg)

        def pause_in_file_write(frame, event, arg):
            # After the first write() into a real file under the run folder: the new checkpoint is half on disk.
            if event == "c_return" and getattr(arg, "__name__", "") == "write":
                f = getattr(arg, "__self__", None)
                if isinstance(f, (io.BufferedWriter, io.FileIO, io.TextIOWrapper)):
                    name = os.readlink(f"/proc/self/fd/{f.fileno()}")
                    if os.path.dirname(name) == run:
                        sys.setprofile(None)
                        print("inside the write", flush=True)
                        time.sleep(60)

        if sys.argv[4] == "pause":
            sys.setprofile(pause_in_file_write)
        save_checkpoint(sys.argv[2], model, "face", epoch=int(sys.argv[3]))
        print("saved", flush=True)
    """
    done = _spawn(child, str(run), str(ckpt), "1", "run", cwd=tmp_path)
    assert done.communicate(timeout=120)[0].strip() == "saved"
    before = ckpt.read_bytes()
    _kill_when(_spawn(child, str(run), str(ckpt), "2", "pause", cwd=tmp_path), "inside the write")
    tally["kill: save_checkpoint"] += 1
    assert ckpt.read_bytes() == before
    assert load_checkpoint(ckpt)["epoch"] == 1
    model, _ = model_from_checkpoint(ckpt)
    torch.manual_seed(1)
    from cunet.model import CUNet

    reference = CUNet(model.cfg)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert sorted(p.name for p in run.glob("*.pt")) == ["last.pt"]
