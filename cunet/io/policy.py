"""The write policy: which files the running command may write, and the one place that decides it.

A policy names the command's inputs and its declared outputs (`Output`: one file and its sidecars, or a folder it
writes into). Every write through `cunet.io` asks `WritePolicy.check` first, which refuses, naming the path in one
line (`OutputError`):

(a) replacing an existing file cunet cannot prove it wrote for this same output (its folder's `.cunet-outputs` lists
    it, by this output, unchanged; see `cunet.io.manifest`), unless the output is one file and `--force` was given;
(b) writing over one of the command's inputs: the same path, another spelling of it, or another name of the same
    file (a hard link: same device and inode). `--force` does not change that, and does not reach into an input
    folder either: a file there (a ground-truth `.pts` under `--data`) is replaced only with the manifest's proof;
(c) a path outside the declared outputs (a `../` or absolute key joined to an output folder), a symbolic link, or a
    folder that leads out of the output folder through one.

Sidecars of a file output are files in its folder named after it (`m.xml` → `m.bin`, `m.engine` →
`m.engine.manifest.json`): the same rule covers them. `start` checks every declared output before any work: the file
itself (a, b, c), a folder that is an input, and that its folder takes a file at all (a one-byte probe, so a read-only
or full disk is one line before minutes of work rather than after).

The CLI sets one policy per command (`cunet.commands._common.write_policy`, applied to every command by `cunet.cli`).
Library functions called from Python have none unless the caller sets one with `writing`: they then write where they
are told, atomically, like `open(path, "wb")` would. The folder writers (`synthesize`, `predict_files`, `evaluate`
with `save_predictions`/`plot_dir`, `run_bench`, `train`, `run_demo`) set the policy their command has when the
caller has none, so what they write from Python is provably theirs to a later CLI run, and the reverse.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from cunet.errors import OutputError, os_error_line
from cunet.io.files import TEMP_NAME, create_temp, discard, sha256_file
from cunet.io.manifest import MANIFEST_NAME, Manifest

__all__ = ["Output", "WritePolicy", "writing", "active_policy"]

#: Manifests are saved at the end of the command and, while it writes, at most this often: a process killed midway
#: (SIGKILL, a power cut) leaves all but its last seconds of files provably its own, for the rerun that resumes it.
SAVE_EVERY_S = 2.0


@dataclass(frozen=True)
class Output:
    """One output a command declared.

    Attributes:
        path: the file, or the folder it writes into, as the user gave it.
        command: "cunet export", "cunet data synth", ...
        option: the option that names it ("--output", "--out", ...); `by` joins the two.
        folder: a folder the command writes files into (else one file and its sidecars).
        force: replace a file cunet cannot prove it wrote (file outputs only; never an input, never through a link).
        tag: who may replace what this output wrote, when several outputs share files (the calibration cache of
            `calibrate` and `quantize`); default `by`.
        scratch: a temporary folder cunet made for itself and removes (`cunet.tempdirs.temp_dir`): it may be written,
            its files are nobody's output and are not recorded.
    """

    path: Path
    command: str
    option: str
    folder: bool = False
    force: bool = False
    tag: str | None = None
    scratch: bool = False

    @property
    def by(self) -> str:
        return self.tag or f"{self.command} {self.option}"

    @property
    def root(self) -> Path:
        """The folder whose manifest proves this output's files."""
        p = _abs(self.path)
        return p if self.folder else p.parent


def _abs(path: str | os.PathLike) -> Path:
    # Lexical: `a/../b` is `b`, links are not followed (they are checked on their own).
    return Path(os.path.abspath(path))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class WritePolicy:
    """What one command may write: its declared outputs, never its inputs (see the module docstring)."""

    def __init__(self, outputs: Iterable[Output], inputs: Iterable[str | os.PathLike] = ()):
        self.outputs = tuple(outputs)
        self._inputs: dict[str, Path] = {}
        self._ids: dict[tuple[int, int], Path] = {}
        self._folders: dict[str, Path] = {}  # the input folders
        for given in inputs:
            p = Path(given)
            self._inputs[os.path.realpath(p)] = p
            if p.is_dir():
                self._folders[os.path.realpath(p)] = p
            with contextlib.suppress(OSError):
                st = os.stat(p)
                self._ids[(st.st_dev, st.st_ino)] = p
        self._manifests: dict[Path, Manifest] = {}
        self._saved = time.monotonic()

    # ------------------------------------------------------------------------------------------- where a path goes
    def output_for(self, path: str | os.PathLike) -> Output | None:
        """The declared output `path` belongs to (the innermost folder, or a file and its sidecars), or None."""
        p, best = _abs(path), None
        for o in self.outputs:
            r = _abs(o.path)
            if o.folder:
                hit = r in p.parents
            else:
                hit = p == r or (p.parent == r.parent and (p.name.startswith(r.name + ".") or p.stem == r.stem))
            if hit and (best is None or len(o.root.parts) > len(best.root.parts)):
                best = o
        return best

    def _where(self) -> str:
        return ", ".join(str(o.path) for o in self.outputs if not o.scratch) or "nothing (it declares no output)"

    def _input(self, real: str) -> Path | None:
        given = self._inputs.get(real)
        if given is None and os.path.exists(real):
            st = os.stat(real)
            given = self._ids.get((st.st_dev, st.st_ino))
        return given

    def manifest(self, root: Path) -> Manifest:
        if root not in self._manifests:
            self._manifests[root] = Manifest(root)
        return self._manifests[root]

    def _rel(self, path: str | os.PathLike, o: Output) -> str:
        return _abs(path).relative_to(o.root).as_posix()

    # ------------------------------------------------------------------------------------------------ the checks
    def check(self, path: str | os.PathLike, *, cache_entry: bool = False, removing: bool = False) -> Output:
        """The output `path` belongs to, after checking (a), (b) and (c) of the module docstring.

        Args:
            path: the file about to be written (or removed).
            cache_entry: `path` is a content-addressed cache entry (its name is a hash of what it holds): in an
                output folder, a stale or damaged file there is the cache's own and may be replaced.
            removing: about to delete `path`: it must be provably cunet's (`force` does not apply).

        Raises:
            OutputError: naming `path` and the reason, in one line.
        """
        o = self._placement(path)
        p = _abs(path)
        if not os.path.lexists(p):
            return o
        if p.is_dir():
            raise OutputError(f"{path}: is a folder, not a file", errno.EISDIR)
        if cache_entry and o.folder and not removing:
            return o
        why = self.manifest(o.root).proof(self._rel(p, o), o.by)
        if why is None:
            return o
        real = os.path.realpath(p)
        within = next((given for d, given in self._folders.items() if _within(real, d)), None)
        if within is not None:
            raise OutputError(f"{path}: exists inside {within}, an input of this command, and {why}; refusing to "
                              "replace it (also with --force): write to another file")
        if o.force and not o.folder and not removing:
            return o
        what = "delete" if removing else "replace"
        advice = ("choose another folder, or move the file away" if o.folder or removing
                  else "pass --force to replace it, or choose another name")
        raise OutputError(f"{path}: exists and {why}; refusing to {what} it: {advice}")

    def _placement(self, path: str | os.PathLike) -> Output:
        """(c) and (b): the output `path` belongs to, refusing a path outside them, a link, or an input."""
        o = self.output_for(path)
        if o is None:
            raise OutputError(f"{path}: outside what this command writes ({self._where()}); refusing to write there")
        p = _abs(path)
        if p.is_symlink():
            raise OutputError(f"{path}: is a symbolic link (to {os.readlink(p)}); cunet does not write through links: "
                              "remove it or name the file it points to")
        real_parent = os.path.realpath(p.parent)
        if not _within(real_parent, os.path.realpath(o.root)):
            raise OutputError(f"{path}: its folder leads out of {o.root} through a symbolic link; refusing to write "
                              "there")
        given = self._input(os.path.join(real_parent, p.name))
        if given is not None:
            same = "" if _abs(given) == p else f"the same file as {given}, "
            raise OutputError(f"{path}: is {same}an input of this command; refusing to overwrite an input "
                              "(also with --force): write to another file")
        return o

    def check_folder(self, folder: str | os.PathLike) -> None:
        """Refuse to create `folder` unless it is a declared output folder or lies inside one (no link leading out)."""
        p = _abs(folder)
        for o in self.outputs:
            if o.folder and (p == o.root or o.root in p.parents):
                if _within(os.path.realpath(p), os.path.realpath(o.root)):
                    return
                raise OutputError(f"{folder}: leads out of {o.path} through a symbolic link; refusing to write there")
            if not o.folder and p == o.root:
                return
        raise OutputError(f"{folder}: outside what this command writes ({self._where()}); refusing to write there")

    def proves(self, path: str | os.PathLike) -> bool:
        """True when `path` is provably written by the output it belongs to (listed by it, unchanged)."""
        o = self.output_for(path)
        return o is not None and self.manifest(o.root).proof(self._rel(path, o), o.by) is None

    def start(self) -> None:
        """Check every declared output before the command does any work (see the module docstring)."""
        for o in self.outputs:
            p = _abs(o.path)
            if o.folder:
                if os.path.lexists(p) and not p.is_dir():
                    raise OutputError(f"{o.path}: exists and is not a folder", errno.ENOTDIR)
                given = self._input(os.path.realpath(p))
                if given is not None:
                    same = "" if _abs(given) == p else f"the same folder as {given}, "
                    raise OutputError(f"{o.path}: is {same}an input of this command; write its outputs to another "
                                      "folder")
            else:
                if p.is_dir() and not p.is_symlink():
                    raise OutputError(f"{o.path}: is a folder; give the name of the file to write", errno.EISDIR)
                self.check(o.path)
            _probe(o)

    # ---------------------------------------------------------------------------------------------- bookkeeping
    def record(self, path: str | os.PathLike, o: Output, written: str | os.PathLike) -> None:
        """List `path` as written by `o`, with the size and hash of `written` (its finished temporary file)."""
        if o.scratch:
            return
        self.manifest(o.root).record(self._rel(path, o), os.path.getsize(written), sha256_file(written), o.by)

    def forget(self, path: str | os.PathLike, o: Output) -> None:
        self.manifest(o.root).forget(self._rel(path, o))

    def adopt(self, path: str | os.PathLike) -> None:
        """List the existing file `path`, as it is now, as this output's own: for a caller that proved it by content
        (`train --resume` continuing the run whose checkpoint it has just validated, `demo` in a folder holding its
        marker), also when the manifest has none or an older entry for it (a run killed before it saved its
        manifest)."""
        name = os.path.basename(path)
        if not os.path.isfile(path) or os.path.islink(path) or name == MANIFEST_NAME or TEMP_NAME.match(name):
            return
        o = self._placement(path)  # a file outside the outputs, or an input, is never adopted
        self.record(path, o, path)

    def written(self) -> None:
        """A file was just committed: save the manifests if the last save is `SAVE_EVERY_S` old."""
        if time.monotonic() - self._saved >= SAVE_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Save every changed manifest."""
        self._saved = time.monotonic()
        for m in self._manifests.values():
            try:
                m.save()
            except OSError as e:
                line = os_error_line(e, m.path)
                if line is None:
                    raise
                raise OutputError(line, e.errno) from e


def present_files(folder: Path) -> Iterator[Path]:
    """The files in `folder` (recursively) other than manifests and stray temporaries, in a stable order."""
    if folder.is_dir():
        for p in sorted(folder.rglob("*")):
            if (p.is_file() or p.is_symlink()) and p.name != MANIFEST_NAME and not TEMP_NAME.match(p.name):
                yield p


def _probe(o: Output) -> None:
    """Write one byte into the folder `o` will be written in (or the nearest folder that exists above it), and
    remove it again: raises the OS's reason (read-only, full, no permission) as one line naming the output."""
    d = o.root
    while not os.path.lexists(d) and d.parent != d:
        d = d.parent
    if not d.is_dir():
        raise OutputError(f"{o.path}: {d} is a file, not a folder", errno.ENOTDIR)
    try:
        fd, tmp = create_temp(d / ".cunet-probe")
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            discard(tmp)
    except OSError as e:
        line = os_error_line(e, o.path)
        if line is None:
            raise
        raise OutputError(line, e.errno) from e


_active: WritePolicy | None = None


def active_policy() -> WritePolicy | None:
    """The policy of the running command, or None (a library call from Python without one)."""
    return _active


@contextlib.contextmanager
def writing(policy: WritePolicy, *, default: bool = False) -> Iterator[WritePolicy]:
    """Run the block under `policy`: check its outputs first (`start`), save its manifests at the end (also after a
    failure, so what was written stays provably cunet's).

    Args:
        policy: the command's policy.
        default: a library function's own policy for callers that set none: when one is active already (the CLI's),
            that one stays and `policy` is ignored.

    Raises:
        OutputError: a declared output is refused (see `WritePolicy.start`).
        RuntimeError: a second policy while one is active (without `default`): one command, one policy.
    """
    global _active
    if _active is not None:
        if not default:
            raise RuntimeError("a write policy is already active: one command, one policy")
        yield _active
        return
    policy.start()
    _active = policy
    try:
        yield policy
    except BaseException:
        with contextlib.suppress(OSError, OutputError):  # the first error is the one to report
            policy.flush()
        raise
    else:
        policy.flush()
    finally:
        _active = None
