"""Every file cunet writes goes through here: one writer, one ownership rule, atomic.

The rule (checked in one place, `cunet.io.policy.WritePolicy.check`, for every write of a command):

(a) a file is replaced only when cunet can prove it wrote it for this same output: the folder's `.cunet-outputs`
    manifest (`cunet.io.manifest`) lists it, by that output, unchanged. `--force` lifts this for the one file an
    output option names (export, quantize, calibrate -o, compile, import-original, pack/unpack, compare, metrics);
(b) an input of the command is never written over (same path, another spelling, a hard link), `--force` or not;
(c) nothing is written outside the declared outputs: not through a `../` or absolute key, not through a symbolic link;
(d) a write is atomic: a temporary sibling is written, flushed and fsynced, then renamed over the target and the
    folder fsynced, so a process killed mid-write (or a full disk) leaves the previous file intact and at worst a
    stray hidden `.<name>.tmp-*` file that the next write ignores.

Every write records itself in its folder's manifest, so the next run of the same output may replace it. An OS error
while writing (read-only or full disk, no permission, a name too long) is an `OutputError` naming the path the user
gave, never the temporary's. Which outputs a command has, and its inputs, come from its click parameters
(`cunet.commands._common.output_option`); the CLI sets that policy around every command. Python callers without a
policy write where they say, atomically (see `cunet.io.policy` for the folder writers that bring their own).

Also here, because every layer writes JSON and hashes files: `jsonable`, the one cleaner that makes a result strict
JSON (NaN/inf → null, numpy → Python, paths → text), and `sha256_file`, the one file hash.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping

from cunet.errors import OutputError, os_error_line
from cunet.io.files import commit, create_temp, discard, jsonable, sha256_file
from cunet.io.manifest import MANIFEST_NAME
from cunet.io.policy import Output, WritePolicy, active_policy, present_files, writing

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "write_files", "make_dirs", "remove",
           "check_writable", "adopt", "claim_folder", "scratch_folder", "jsonable", "sha256_file", "MANIFEST_NAME",
           "Output", "WritePolicy", "writing", "active_policy"]


@contextlib.contextmanager
def _os_errors(path: Path, *own: str) -> Iterator[None]:
    """Turn an OS error about `path` (or its temporary, or a folder above it) into one `OutputError` line."""
    try:
        yield
    except OSError as e:
        mine = e.filename is None or str(e.filename) in (str(path), *own) or Path(e.filename) in path.parents
        line = os_error_line(e, path) if mine else None
        if line is None:
            raise
        raise OutputError(line, e.errno) from e


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, cache_entry: bool = False) -> Iterator[IO]:
    """Open a temporary file beside `path`; on a clean exit it replaces `path` atomically.

    Args:
        path: the final destination. Its parent directories are created.
        mode: "wb" or "w" (text, UTF-8).
        cache_entry: `path` is a content-addressed cache entry (see `WritePolicy.check`).

    Yields:
        The open temporary file. If the block raises, the temporary file is removed and `path` is untouched.

    Raises:
        OutputError: the running command's policy refuses `path`, or the OS could not write it (one line).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports 'w' and 'wb', not {mode!r}")
    path = Path(path)
    policy = active_policy()
    out = policy.check(path, cache_entry=cache_entry) if policy is not None else None
    _mkdir(path.parent, policy)
    with _os_errors(path):
        fd, tmp = create_temp(path)
    try:
        with _os_errors(path, tmp):
            with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            if policy is not None and out is not None:
                policy.record(path, out, tmp)
            commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    if policy is not None:
        policy.written()


def write_bytes(path: str | os.PathLike, data: bytes, *, cache_entry: bool = False) -> None:
    """Atomically write `data` to `path`."""
    with atomic_write(path, "wb", cache_entry=cache_entry) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str, *, cache_entry: bool = False) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    with atomic_write(path, "w", cache_entry=cache_entry) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any, *, cache_entry: bool = False) -> None:
    """Atomically write `obj` as indented JSON, cleaned by `jsonable` (strict JSON readers accept it)."""
    write_text(path, json.dumps(jsonable(obj), indent=2) + "\n", cache_entry=cache_entry)


def write_files(files: Mapping[str | os.PathLike, bytes]) -> None:
    """Write several files that make one artifact (an IR's `.xml` and `.bin`) as nearly at once as files allow:
    every file is checked, then every temporary written and fsynced, and only then are they renamed in order. A full
    disk or a refusal leaves every old file as it was."""
    policy = active_policy()
    items = [(Path(p), data) for p, data in files.items()]
    outs = [policy.check(p) if policy is not None else None for p, _ in items]
    temps: list[str] = []
    try:
        for (path, data), out in zip(items, outs):
            _mkdir(path.parent, policy)
            with _os_errors(path):
                fd, tmp = create_temp(path)
            temps.append(tmp)
            with _os_errors(path, tmp), os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if policy is not None and out is not None:
                policy.record(path, out, tmp)
        for (path, _), tmp in zip(items, temps):
            with _os_errors(path, tmp):
                commit(tmp, path)
    except BaseException:
        for tmp in temps:
            discard(tmp)
        raise
    if policy is not None:
        policy.written()


def _mkdir(folder: Path, policy: WritePolicy | None) -> None:
    if folder.is_dir():
        return
    if policy is not None:
        policy.check_folder(folder)
    with _os_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)


def make_dirs(folder: str | os.PathLike) -> Path:
    """Create `folder` (and its parents) where the running command may write; returns it."""
    folder = Path(folder)
    _mkdir(folder, active_policy())
    return folder


def remove(path: str | os.PathLike) -> None:
    """Delete `path` if it exists; under a policy only a file provably written by its output (never `--force`)."""
    path = Path(path)
    policy = active_policy()
    if not os.path.lexists(path):
        return
    if policy is not None:
        out = policy.check(path, removing=True)
        policy.forget(path, out)
    with _os_errors(path):
        path.unlink()


def check_writable(paths: Iterable[str | os.PathLike]) -> None:
    """Refuse, before any work, a path the running command would write and may not (see `WritePolicy.check`); a
    writer calls this with the files it will write once it knows them (a prediction per image, an IR's `.bin`)."""
    policy = active_policy()
    if policy is not None:
        for p in paths:
            policy.check(p)


def adopt(paths: Iterable[str | os.PathLike]) -> None:
    """List existing files as the running output's own, for a caller that proved so by their content (see
    `WritePolicy.adopt`: `train --resume` and `demo` use it for folders written before manifests existed, or by a run
    killed before it saved its manifest)."""
    policy = active_policy()
    if policy is not None:
        for p in paths:
            policy.adopt(p)


@contextlib.contextmanager
def scratch_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Let the running command write into `folder`, a temporary folder cunet made for itself and removes
    (`cunet.tempdirs.temp_dir`), for the block's duration: what it holds is nobody's output, nothing is recorded."""
    folder = Path(folder)
    policy = active_policy()
    if policy is None:
        yield folder
        return
    mine = Output(folder, "cunet", "(temporary folder)", folder=True, scratch=True)
    policy.outputs += (mine,)
    try:
        yield folder
    finally:
        policy.outputs = tuple(o for o in policy.outputs if o is not mine)


def claim_folder(folder: str | os.PathLike, overwrite: bool) -> list[Path]:
    """Make an output folder ready for a fresh set of files; returns the files kept there (not this output's).

    An empty or missing folder is used as is. A non-empty one needs `overwrite` and at least one file of an earlier
    run of the same output (listed and unchanged); those are deleted and every other file is kept (writing over one
    later is refused).

    Raises:
        OutputError: `folder` is a file, or is non-empty without `overwrite`, or holds no file of this output (one
            line naming a file found there).
    """
    folder = Path(folder)
    policy = active_policy()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder")
    with _os_errors(folder):
        present = list(present_files(folder))
    if not present:
        return []
    o = policy.output_for(present[0]) if policy is not None else None
    by = o.by if o is not None else "cunet"
    if not overwrite:
        raise OutputError(f"{folder}: folder is not empty; choose a new folder or allow overwriting (--overwrite "
                          f"replaces only files an earlier `{by}` wrote there)")
    ours = [p for p in present if policy is not None and policy.proves(p)]
    if not ours:
        raise OutputError(f"{folder}: holds {present[0].relative_to(folder).as_posix()} and {len(present) - 1} other "
                          f"file(s), none written by `{by}` (no {MANIFEST_NAME} lists them); refusing to overwrite: "
                          "choose a new folder")
    for p in ours:
        remove(p)
    return [p for p in present if p not in set(ours)]

