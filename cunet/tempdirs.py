"""cunet's own temporary folders: each carries a marker naming its owner, and a later cunet removes those whose owner
is gone.

`tempfile.TemporaryDirectory` removes its folder when its `with` block ends, which a killed process (SIGKILL, the
OOM killer, a closed laptop lid that became a reboot) never reaches: `/tmp/cunet-quant-*` folders of calibration
tensors stayed forever. Every temporary folder cunet makes comes from `temp_dir`, which writes `MARKER` into it
before anything else: the owning process's PID, its start time (the kernel's, from /proc, so a recycled PID is not
taken for the owner), the boot it ran in and the host. `sweep` removes a `cunet-*` folder of the temporary
directory only when its marker says the owner is gone. A folder without a readable marker (another program's, or one
whose owner is between `mkdtemp` and writing the marker), another user's folder, a symlink, a marker from another
host and a live owner's folder are never touched.

`sweep` runs at every `cunet` start (`cunet.cli.main`) and before the first temporary folder of a process that uses
the library directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

from cunet.io import scratch_folder, write_json

__all__ = ["PREFIX", "MARKER", "temp_dir", "sweep", "sweep_once", "owner_record", "owner_alive"]

#: Every cunet temporary folder is `<tempdir>/cunet-<kind>-<random>`.
PREFIX = "cunet-"
#: The owner marker inside each of them.
MARKER = ".cunet-owner.json"

_swept = False


def _proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (field 22 of /proc/PID/stat), None without /proc or
    without such a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and ')': split after its last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])  # fields[0] is field 3 (state)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def owner_record(pid: int | None = None) -> dict[str, Any]:
    """What the marker records about a process (default: this one): pid, start (ticks, or None), boot, host."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start": _proc_start_ticks(pid), "boot": _boot_id(), "host": socket.gethostname()}


def owner_alive(record: dict[str, Any]) -> bool:
    """Whether the process a marker names may still be running (True whenever that cannot be decided)."""
    if record.get("host") != socket.gethostname():
        return True  # a temporary directory shared with another machine: its processes are not visible here
    boot = _boot_id()
    if boot is not None and record.get("boot") not in (None, boot):
        return False  # the machine has restarted since
    pid = record["pid"]
    if record.get("start") is not None and Path("/proc").is_dir():
        return _proc_start_ticks(pid) == record["start"]  # no process, or the PID belongs to a newer one
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    return record


def sweep(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the cunet temporary folders under `root` (default: the system's) whose owner is gone.

    Returns:
        The folders removed.
    """
    root = Path(tempfile.gettempdir() if root is None else root)
    removed = []
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(PREFIX)]
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False) or (uid is not None and entry.stat().st_uid != uid):
                continue
        except OSError:
            continue
        folder = Path(entry.path)
        record = _read_marker(folder)
        if record is None or owner_alive(record):
            continue
        shutil.rmtree(folder, ignore_errors=True)  # two sweeps may race for one folder: either one finishing is fine
        if not folder.exists():
            removed.append(folder)
    return removed


def sweep_once() -> None:
    """`sweep` the system's temporary directory, once per process."""
    global _swept
    if not _swept:
        _swept = True
        sweep()


@contextlib.contextmanager
def temp_dir(kind: str) -> Iterator[Path]:
    """A fresh folder `<tempdir>/cunet-<kind>-<8 random characters>` with an owner marker, removed with its contents
    on exit.

    Args:
        kind: what the folder is for (e.g. "quant"); part of its name.

    Yields:
        The folder's path.
    """
    sweep_once()
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
    try:
        with scratch_folder(folder):  # the running command's write policy lets cunet write into its own folder
            write_json(folder / MARKER, owner_record())
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
