"""Run one command with one folder read-only or full, and report what the folder holds afterwards (for
test_write_matrix.py; a script, not a test module).

    python fs_sandbox.py MODE FOLDER RESULT -- COMMAND...

MODE is "ro" (the folder becomes a read-only bind mount of itself), "full" (a 256 KiB tmpfs holding the folder's
files is mounted over it and filled to the last byte) or "small:SIZE" (a tmpfs of SIZE, e.g. 16k, holding the
folder's files, not filled: a write that starts fits, a large one runs out midway). The mounts are made inside the
private mount namespace this script is started in (`unshare --mount`, or `unshare --map-root-user --mount` where only
user namespaces are allowed), so they vanish with it and nothing else on the machine sees them. Where no namespace
can be had, `--injecting` makes the same OS errors (EROFS, ENOSPC) at Python's own boundary to the OS instead: an
audit hook refuses every open for writing, mkdir, rename and remove under the folder, in the command's process only.

RESULT gets {"rc", "stdout", "stderr", "files": {relative path: sha256}} of the folder after the command (the filler
file excluded), since a tmpfs and its files are gone once this process ends.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

FILLER = ".sandbox-filler"
TMPFS_SIZE = "256k"


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink() and p.name != FILLER}


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _fill(folder: Path) -> None:
    fd = os.open(folder / FILLER, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (4096, 1):  # pages, then the last bytes
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


def _inject(mode: str, folder: str) -> None:
    """The audit hook of `--inject`: the OS error of MODE for every write under `folder` (this process only)."""
    code = errno.EROFS if mode == "ro" else errno.ENOSPC
    root = os.path.realpath(folder)
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def under(path: object) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        p = os.path.realpath(os.fsdecode(path))
        return p == root or p.startswith(root + os.sep)

    def hook(event: str, args: tuple) -> None:
        if event == "open" and under(args[0]) and isinstance(args[2], int) and args[2] & writing:
            raise OSError(code, os.strerror(code), os.fsdecode(args[0]))
        if event in ("os.mkdir", "os.remove", "os.rmdir") and under(args[0]):
            raise OSError(code, os.strerror(code), os.fsdecode(args[0]))
        if event == "os.rename" and (under(args[0]) or under(args[1])):
            raise OSError(code, os.strerror(code), os.fsdecode(args[1]))

    sys.addaudithook(hook)


def main(argv: list[str]) -> int:
    if argv[0] == "--inject":  # the command's own process, with the hook: python fs_sandbox.py --inject MODE DIR -m ...
        import runpy

        _, mode, folder, _m, module, *rest = argv
        _inject(mode, folder)
        sys.argv = [module, *rest]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    inject = argv[0] == "--injecting"
    mode, folder, result, sep, *command = argv[1:] if inject else argv
    assert sep == "--" and (mode in ("ro", "full") or mode.startswith("small:"))
    root = Path(folder)
    if inject:
        assert not mode.startswith("small:"), "a partly full disk needs a real tmpfs"
        command = [sys.executable, __file__, "--inject", mode, folder, *command[1:]]
    elif mode == "ro":
        _mount("--bind", folder, folder)
        _mount("-o", "remount,bind,ro", folder)
    else:
        kept = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        size = TMPFS_SIZE if mode == "full" else mode.split(":", 1)[1]
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder)
        for rel, data in kept.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        if mode == "full":
            _fill(root)
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    Path(result).write_text(json.dumps({"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr,
                                        "files": _files(root)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
