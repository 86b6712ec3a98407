"""Nothing lost, nothing silent — for every command, not for the commands someone tested (issue 22).

Two parts, both generated from the command table (`cunet --help`, subcommand groups included):

* the walk: every option that names something a command writes is declared with
  `cunet.commands._common.output_option` (so the CLI's write policy knows it), every command runs under `guard`, a
  command with a file output has `--force`, and every declared output has a recipe below;
* the matrix: for every command x every output option, five real subprocesses of the real `cunet` CLI on tiny real
  artifacts: (a) an unrelated file of the user's where the command would write, (b) the command's own input named as
  the output, (c) a read-only folder, (d) a full disk, (e) a path that escapes through a symbolic link. Each must
  exit 1 with exactly one `error:` line that says why, no traceback, every byte of the user's files unchanged
  (sha256 before/after) and nothing new left behind (no temporaries). A calibration cache is the one exception in
  (a): its entries are the cache's own (see `cunet.io.policy`), so an unrelated file there is left alone while the
  command succeeds.

(c) and (d) use a read-only bind mount and a full 256 KiB tmpfs inside a private mount namespace (fs_sandbox.py);
where the machine allows none, the same OS errors are raised at Python's audit hooks instead (CUNET_TEST_FS=inject
forces that). Cases that fail before the command reads its inputs take a fraction of a second; the few that must
load a model or the data first take a few.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import click
import pytest

from cunet.cli import cli
from cunet.commands import _common

HERE = Path(__file__).resolve().parent
SANDBOX = HERE / "fs_sandbox.py"
KINDS = ("foreign", "input", "readonly", "full", "escape")
#: Words of an option's name that mean "the command writes here" (`--plot-dir` → plot, `-o` → o).
OUTPUT_WORDS = {"o", "out", "output", "report", "work", "csv", "plot", "save", "cache", "dest"}
DECLARE = ("declare it with cunet.commands._common.output_option(...) (folder=True for a folder it writes into; "
           "give the command @force_option if it names one file) and add its case to RECIPES in "
           "tests/reliability/test_write_matrix.py")


# ------------------------------------------------------------------------------------------------ the command table
def leaf_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    """(full name, command) of every command `cunet --help` lists, subcommands of groups included."""
    ctx = click.Context(group)
    found = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            found += leaf_commands(cmd, (*prefix, name))
        elif cmd is not None:
            found.append((" ".join((*prefix, name)), cmd))
    return found


def option_name(param: click.Parameter) -> str:
    return max(param.opts, key=len)


def looks_like_output(param: click.Parameter) -> bool:
    """A path parameter named like an output, or a file opened for writing."""
    if isinstance(param.type, click.File):
        return "w" in param.type.mode or "a" in param.type.mode
    words = {w for o in param.opts for w in re.split(r"[-_]", o.lstrip("-"))}
    return isinstance(param.type, click.Path) and bool(words & OUTPUT_WORDS)


def declared(param: click.Parameter) -> bool:
    return isinstance(param.type, getattr(_common, "OutputPath", ()))


def output_table() -> list[tuple[str, str, click.Parameter]]:
    """(command, option, parameter) of every output option: declared ones and ones that look like outputs."""
    return [(name, option_name(p), p) for name, cmd in leaf_commands() for p in cmd.params
            if declared(p) or looks_like_output(p)]


# ------------------------------------------------------------------------------------------------------- recipes
@dataclass
class Case:
    """One matrix case's files: copies of the session's artifacts in its own folder, and the folder `d` the output
    goes in (the one made read-only or full)."""

    root: Path
    ckpt: Path
    onnx: Path
    data: Path
    calib_data: Path  # the session's dataset (calibration cache entry names depend on its paths), or a copy
    report: Path
    original: Path
    packed: Path
    d: Path


@dataclass(frozen=True)
class Recipe:
    """How to run a command with its output at a given path.

    Attributes:
        argv: the command line (after `cunet`) with the output at the path given.
        suffix: a file output's extension.
        writes: a folder output: a file the command writes into it (relative), or how to find it.
        own_input: an input of the command to name as its output in case (b); None: it reads no file.
    """

    argv: Callable[[Case, Path], list]
    suffix: str = ""
    writes: str | Callable[[Case], str] | None = None
    own_input: Callable[[Case], Path] | None = None


def _first_test_pts(c: Case) -> str:
    return min(p.relative_to(c.data).as_posix() for p in (c.data / "test").rglob("*.pts"))


def _first_train_json(c: Case) -> str:
    return min(p.name for p in (c.data / "train").glob("*.png")).removesuffix(".png") + ".json"


_ENTRIES: dict[tuple[str, Path, str], str] = {}


def _cache_entry(command: str) -> Callable[[Case], str]:
    """The calibration cache entry `command` writes for the case's model and data, asked of a real run of it (the name
    is a hash of the model it calibrates and of the selected files, so one run serves every case)."""

    def find(c: Case) -> str:
        key = (command, c.calib_data, hashlib.sha256(c.onnx.read_bytes()).hexdigest())
        if key not in _ENTRIES:
            scratch = c.calib_data.parent / f"discover-{command}-{key[2][:12]}"
            argv = RECIPES[(command, "--cache-dir")].argv(c, scratch / "cache")
            run = _cli([*argv, "--json"], cwd=c.root)
            assert run.returncode == 0, run.stderr
            doc = json.loads(run.stdout)
            _ENTRIES[key] = Path(doc.get("cache_file") or doc["calibration_cache"]).name
        return _ENTRIES[key]

    return find


def _quick_bench(c: Case, report: Path, work: Path | None = None) -> list:
    return ["bench", c.ckpt, "--data", c.data, "--report", report, *(["--work", work] if work else []), "--quick",
            "--no-progress", "--calib-samples", "2"]


def _quantize(c: Case, out: Path, cache: Path) -> list:
    return ["quantize", c.onnx, "--recipe", "cpu", "--data", c.calib_data, "--samples", "2", "--cache-dir", cache,
            "-o", out]


RECIPES: dict[tuple[str, str], Recipe] = {
    ("bench", "--report"): Recipe(lambda c, t: _quick_bench(c, t), writes="bench.json", own_input=lambda c: c.data),
    ("bench", "--work"): Recipe(lambda c, t: _quick_bench(c, c.root / "report", t), writes="model.onnx",
                                own_input=lambda c: c.data),
    ("calibrate", "--cache-dir"): Recipe(
        lambda c, t: ["calibrate", c.onnx, "--data", c.calib_data, "--samples", "2", "--cache-dir", t],
        writes=_cache_entry("calibrate"), own_input=lambda c: c.calib_data),
    ("calibrate", "--output"): Recipe(
        lambda c, t: ["calibrate", c.onnx, "--data", c.calib_data, "--samples", "2", "--cache-dir",
                      c.root / "cache", "-o", t], suffix=".json", own_input=lambda c: c.onnx),
    ("quantize", "--cache-dir"): Recipe(lambda c, t: _quantize(c, t.parent / "q.onnx", t),
                                        writes=_cache_entry("quantize"), own_input=lambda c: c.calib_data),
    ("quantize", "--output"): Recipe(lambda c, t: _quantize(c, t, c.root / "cache"), suffix=".onnx",
                                     own_input=lambda c: c.onnx),
    ("compare", "--csv"): Recipe(lambda c, t: ["compare", c.report, "--csv", t], suffix=".csv",
                                 own_input=lambda c: c.report),
    ("compare", "--plot"): Recipe(lambda c, t: ["compare", c.report, "--plot", t], suffix=".png",
                                  own_input=lambda c: c.report),
    ("compile", "--output"): Recipe(lambda c, t: ["compile", c.onnx, "--precision", "fp32", "-o", t],
                                    suffix=".engine", own_input=lambda c: c.onnx),
    ("compile", "--timing-cache"): Recipe(
        lambda c, t: ["compile", c.onnx, "--precision", "fp32", "-o", c.root / "m.engine", "--timing-cache", t],
        suffix=".cache", own_input=lambda c: c.onnx),
    ("data synth", "--out"): Recipe(
        lambda c, t: ["data", "synth", "--task", "face", "--out", t, "--n", "4", "--image-size", "64"],
        writes="train/0000.png"),
    ("demo", "--out"): Recipe(lambda c, t: ["demo", "--quick", "--out", t], writes="report/report.md"),
    ("evaluate", "--save-predictions"): Recipe(
        lambda c, t: ["evaluate", c.onnx, "--data", c.data, "--save-predictions", t], writes=_first_test_pts,
        own_input=lambda c: c.data),
    ("evaluate", "--plot-dir"): Recipe(lambda c, t: ["evaluate", c.onnx, "--data", c.data, "--plot-dir", t],
                                       writes="ced.png", own_input=lambda c: c.data),
    ("export", "--output"): Recipe(lambda c, t: ["export", c.ckpt, "-o", t, "--no-verify"], suffix=".onnx",
                                   own_input=lambda c: c.ckpt),
    ("import-original", "--out"): Recipe(
        lambda c, t: ["import-original", c.original, "-o", t, "--input-size", "64"], suffix=".pt",
        own_input=lambda c: c.original),
    ("metrics", "--plot"): Recipe(
        lambda c, t: ["metrics", "--task", "face", "--gt", c.data, "--pred", c.data, "--plot", t], suffix=".png",
        own_input=lambda c: c.data / _first_test_pts(c)),  # a ground-truth file inside --gt
    ("pack", "--output"): Recipe(lambda c, t: ["pack", c.onnx, "-o", t], suffix=".cunetq",
                                 own_input=lambda c: c.onnx),
    ("unpack", "--output"): Recipe(lambda c, t: ["unpack", c.packed, "-o", t], suffix=".onnx",
                                   own_input=lambda c: c.packed),
    ("predict", "--out"): Recipe(lambda c, t: ["predict", c.onnx, c.data / "train", "--out", t],
                                 writes=_first_train_json, own_input=lambda c: c.data / "train"),
    ("train", "--out"): Recipe(lambda c, t: ["train", "--task", "face", "--data", c.data, "--out", t, "--epochs", "1"],
                               writes="best.pt", own_input=lambda c: c.data),
}


# ------------------------------------------------------------------------------------------------------ the walk
def test_every_output_option_is_declared_through_output_option():
    undeclared = [f"cunet {name} {option}" for name, option, p in output_table() if not declared(p)]
    assert not undeclared, f"{', '.join(undeclared)}: names a file or folder the command writes; {DECLARE}"


def test_every_declared_output_has_a_case_in_the_matrix():
    missing = [f"cunet {name} {option}" for name, option, p in output_table() if (name, option) not in RECIPES]
    assert not missing, f"{', '.join(missing)}: no case in the write matrix; {DECLARE}"
    stale = sorted(set(RECIPES) - {(name, option) for name, option, _ in output_table()})
    assert not stale, f"RECIPES names outputs no command has any more: {stale}"


def test_every_command_runs_under_its_write_policy_and_file_outputs_have_force():
    for name, cmd in leaf_commands():
        assert getattr(cmd.callback, "cunet_guarded", False), f"cunet {name}: not wrapped by _common.guard"
        files = [option_name(p) for p in cmd.params if declared(p) and not p.type.folder]
        if files:
            assert "--force" in {o for p in cmd.params for o in p.opts}, f"cunet {name} {files[0]}: no --force"


def test_the_walk_finds_an_output_option_declared_without_the_helper():
    """The walk can fail: a command naming its output with a plain click.Path is caught, by any of today's names."""

    @click.command()
    @click.option("--report-dir", type=click.Path(file_okay=False))
    @click.option("-o", type=click.Path())
    @click.option("--data", type=click.Path())
    def sneaky(report_dir, o, data):
        """Writes where it likes."""

    found = [option_name(p) for p in sneaky.params if looks_like_output(p) and not declared(p)]
    assert found == ["--report-dir", "-o"]


def test_the_boundary_gives_os_errors_and_missing_packages_one_line_and_keeps_bugs_as_they_are():
    """`guard`, around every command: a user's OS error (with the path) and a missing optional package become one
    `CunetError` line; an OS error that is not the user's environment, or a missing module that is not an optional
    package of cunet, is a bug and stays what it was (the CLI then shows its traceback)."""
    import errno

    from cunet.errors import CunetError

    def command(exc: BaseException) -> click.Command:
        @click.command()
        def raising():
            raise exc

        return _common.guard(raising)

    cases = [(OSError(errno.EROFS, "Read-only file system", "out/m.onnx"),
              r"^out/m\.onnx: Read-only file system \(write to a writable folder\)$"),
             (OSError(errno.ENOSPC, "No space left on device", "out/m.onnx"), r"^out/m\.onnx: No space left"),
             (ModuleNotFoundError("No module named 'nncf'", name="nncf"),
              r"needs nncf, which this install lacks: pip install 'cunet\[nncf\]'$")]
    for exc, line in cases:
        with pytest.raises(CunetError, match=line):
            command(exc).main([], prog_name="cunet", standalone_mode=False)
    for bug in (OSError(errno.EIO, "Input/output error", "x"), ModuleNotFoundError("no", name="not_ours")):
        with pytest.raises(type(bug)) as raised:
            command(bug).main([], prog_name="cunet", standalone_mode=False)
        assert raised.value is bug


# ------------------------------------------------------------------------------------------------ the artifacts
@pytest.fixture(scope="session")
def inputs(face_ckpt, face_onnx, face_data, tmp_path_factory) -> dict[str, Path]:
    """The session's checkpoint, ONNX model and dataset, plus a real profile report, a real original-code
    checkpoint (the committed fixture, as the original code saves it) and a real .cunetq file."""
    import numpy as np
    import torch

    from cunet.compile.export import export_onnx
    from cunet.compile.packing import pack

    root = tmp_path_factory.mktemp("matrix-inputs")
    run = _cli(["profile", face_onnx, "--iters", "2", "--warmup", "1", "--json"], cwd=root)
    assert run.returncode == 0, run.stderr
    (root / "profile.json").write_text(run.stdout)
    z = np.load(HERE.parent / "fixtures" / "original" / "cu_net_L2_K1_face.npz")
    state, offset = {}, 0
    for _key, prev_key, shape in json.loads(str(z["index"])):
        n = int(np.prod(shape))
        if prev_key is not None:
            state[f"module.{prev_key}"] = torch.from_numpy(z["weights"][offset:offset + n].reshape(shape).copy())
        offset += n
    torch.save({"state_dict": state}, root / "original.pth.tar")
    # a real .cunetq needs low-bit weights: the tiny model with 4-bit weights, exported (unverified: not what is
    # tested here) and packed
    from cunet.model import CUNet, CUNetConfig
    from cunet.model.quant import QuantConfig, apply_quantization

    torch.manual_seed(0)
    cfg = CUNetConfig(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)
    export_onnx(apply_quantization(CUNet(cfg), QuantConfig(bits_w=4)).eval(), root / "w4.onnx", task="face",
                verify=False)
    pack(root / "w4.onnx", root / "face.cunetq")
    return {"ckpt": face_ckpt, "onnx": face_onnx, "data": face_data, "report": root / "profile.json",
            "original": root / "original.pth.tar", "packed": root / "face.cunetq"}


def _case(inputs: dict[str, Path], root: Path, kind: str) -> Case:
    src = root / "in"
    src.mkdir()
    copies = {k: Path(shutil.copy(v, src / v.name)) for k, v in inputs.items() if k != "data"}
    data = Path(shutil.copytree(inputs["data"], src / "data"))
    d = root / "d"
    d.mkdir()
    return Case(root=root, data=data, calib_data=data if kind == "input" else inputs["data"], d=d, **copies)


# ------------------------------------------------------------------------------------------------- running it
def _cli(argv: list, cwd: Path, sandbox: tuple[str, Path, Path] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cunet", *map(str, argv)]
    if sandbox is not None:
        mode, folder, result = sandbox
        how = _sandbox_mode()
        if how == "inject":
            command = [sys.executable, str(SANDBOX), "--injecting", mode, str(folder), str(result), "--", *command]
        else:
            command = ["unshare", *how.split(), sys.executable, str(SANDBOX), mode, str(folder), str(result), "--",
                       *command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


@lru_cache(maxsize=None)
def _sandbox_mode() -> str:
    """How (c) and (d) get a read-only or full folder here: a private mount namespace as root, one as a mapped root
    user, or injected OS errors."""
    if os.environ.get("CUNET_TEST_FS") == "inject" or shutil.which("unshare") is None:
        return "inject"
    for how in ("--mount --propagation private", "--map-root-user --mount --propagation private"):
        probe = subprocess.run(["unshare", *how.split(), "mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", "/mnt"],
                               capture_output=True)
        if probe.returncode == 0:
            return how
    return "inject"


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


CASES = [pytest.param(name, option, kind, id=f"{name.replace(' ', '-')}{option}-{kind}")
         for name, option, _ in output_table() for kind in KINDS]


@pytest.mark.parametrize("name, option, kind", CASES)
def test_write_matrix(name, option, kind, inputs, tmp_path):
    recipe = RECIPES.get((name, option))
    assert recipe is not None, f"cunet {name} {option}: no case in the write matrix; {DECLARE}"
    param = next(p for n, o, p in output_table() if (n, o) == (name, option))
    folder = bool(getattr(param.type, "folder", False))
    c = _case(inputs, tmp_path, kind)
    target = c.d / ("out" + ("" if folder else recipe.suffix))
    writes = recipe.writes(c) if callable(recipe.writes) and kind in ("foreign", "escape") else recipe.writes
    inside = target / writes if folder and isinstance(writes, str) else target
    cache = bool(getattr(param.type, "cache", False))
    user = b"the user's own bytes\n"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(user)
    extra: list[str] = []
    if kind == "foreign":
        if cache:
            inside = target / "unrelated.txt"  # a file at an entry's name is the cache's own; an unrelated one is not
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.write_bytes(user)
        expect = re.escape(Path(writes).name if folder else target.name) + (f"|{re.escape(target.name)}" if folder
                                                                             else "")
    elif kind == "input":
        if recipe.own_input is None:
            pytest.skip(f"cunet {name} reads no file that could be named as its output")
        target = recipe.own_input(c)
        if not folder and _has_force(name):
            extra = ["--force"]  # an input is refused also with --force
        expect = "input"
    elif kind == "escape":
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.symlink_to(victim)
        expect = "symbolic link" + ("|not empty|not made by" if folder else "")
    else:
        (c.d / "user.txt").write_bytes(user)
        expect = "Read-only file system" if kind == "readonly" else "No space left on device"
    argv = [*recipe.argv(c, target), *extra]
    before = _snapshot(tmp_path)
    if kind in ("readonly", "full"):
        result = tmp_path / "result.json"
        run = _cli(argv, cwd=tmp_path, sandbox=("ro" if kind == "readonly" else "full", c.d, result))
        assert run.returncode == 0, run.stderr  # the sandbox itself
        doc = json.loads(result.read_text())
        rc, stderr = doc["rc"], doc["stderr"]
        inside_d = {k: v for k, v in before.items() if k.startswith("d/")}
        assert {f"d/{k}": v for k, v in doc["files"].items()} == inside_d, "the folder's files changed"
        result.unlink()
    else:
        run = _cli(argv, cwd=tmp_path)
        rc, stderr = run.returncode, run.stderr
    label = f"cunet {name} {option} ({kind})"
    after = _snapshot(tmp_path)
    if kind == "foreign" and cache:
        assert rc == 0, f"{label}: exit {rc}\n{stderr}"
        assert after["d/out/unrelated.txt"] == before["d/out/unrelated.txt"]
        return
    assert "Traceback" not in stderr, f"{label}:\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(errors) == 1, f"{label}: exit {rc}, {len(errors)} error line(s)\n{stderr}"
    assert re.search(expect, errors[0]), f"{label}: {errors[0]!r} does not say {expect!r}"
    new = {k: v for k, v in after.items() if k not in before and not k.endswith(".lock")}  # the cache's entry locks
    assert not new, f"{label}: left {sorted(new)}"
    assert {k: after.get(k) for k in before} == before, f"{label}: the user's bytes changed"


def _has_force(name: str) -> bool:
    return "--force" in {o for p in dict(leaf_commands())[name].params for o in p.opts}


# ------------------------------------------------------------------------------ a disk that fills up midway
@pytest.mark.parametrize("size", ["8k", "40k"])
def test_a_disk_that_fills_midway_leaves_whole_files_and_no_temporaries(size, tmp_path):
    """Room for the 1-byte check at the start, not for everything: `data synth` stops at the file that does not fit
    (one line), and every file left is byte for byte what a complete run writes (synth is deterministic: same seed,
    same bytes), none cut short, no temporary left."""
    if _sandbox_mode() == "inject":
        pytest.skip("a partly full disk needs a real tmpfs (no mount namespace here)")
    argv = ["data", "synth", "--task", "face", "--n", "12", "--image-size", "64"]
    whole = tmp_path / "whole"
    assert _cli([*argv, "--out", whole], cwd=tmp_path).returncode == 0
    reference = {k: v for k, v in _snapshot(whole).items() if k != ".cunet-outputs"}
    d = tmp_path / "d"
    d.mkdir()
    result = tmp_path / "result.json"
    run = _cli([*argv, "--out", d / "out"], cwd=tmp_path, sandbox=(f"small:{size}", d, result))
    assert run.returncode == 0, run.stderr
    doc = json.loads(result.read_text())
    errors = [line for line in doc["stderr"].splitlines() if line.startswith("error:")]
    assert doc["rc"] == 1 and len(errors) == 1 and "Traceback" not in doc["stderr"], doc["stderr"]
    assert "No space left on device" in errors[0]
    left = {k.removeprefix("out/"): v for k, v in doc["files"].items() if k != "out/.cunet-outputs"}
    assert left and len(left) < len(reference)
    assert {k: reference.get(k) for k in left} == left  # whole files only
    assert not [k for k in doc["files"] if re.search(r"\.tmp-[0-9a-f]{12}$", k)]
