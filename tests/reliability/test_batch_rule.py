"""One rule for bad files in a folder (issue 27, item 4), for every command that reads many files.

The cases are generated from the command table: every command of `cunet --help` with a `--strict` option is a
batch command, and each must have a case here for faces and for poses (`test_every_batch_command_has_cases`).
Each case runs the real command (through `cunet.cli.main`, the console script's entry point; one also as a real
subprocess) on one real folder built from the shared 300-W and MPII samples (../shared/fixtures):

- faces: 4 good faces (the two real images, twice each, with their real 68 points as `.pts`), one image without a
  `.pts`, one `.pts` of 19 points, one truncated PNG (with a good `.pts`);
- poses: the 5 real MPII records (head boxes added from each person's head joints), one record of 19 joints, one
  whose image does not exist, one whose image is a truncated JPEG, in `train.json` and `valid.json`.

and checks the promise: one `skipped FILE: why` line per bad file, the good ones used and counted (the command's
JSON and its closing line say how many), exit status 1, no traceback; with `--strict` the run stops at the first of
those files with one `error: FILE: why` line and writes nothing. On main before this rule, `evaluate` stopped at
the first bad file, `calibrate`/`quantize` dropped bad annotations silently (exit 0), `train` counted the
unreadable image and stopped mid-epoch, `quantize`, `bench`, `train` and `metrics` had no `--strict`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
#: The commands the rule is promised for (issue 27): the command table must give each of them --strict.
BATCH_COMMANDS = {"evaluate", "calibrate", "quantize", "bench", "train", "predict", "metrics"}
CLOSING = re.compile(r"^error: skipped (\d+) file\(s\) that cannot be used; (\d+) .+ \(--strict stops at the first\)$")


def _strict_commands() -> set[str]:
    """Every command (and group subcommand) of the CLI that has a --strict option."""
    import click

    from cunet.cli import cli

    found = set()
    with click.Context(cli) as ctx:
        for name in cli.list_commands(ctx):
            cmd = cli.get_command(ctx, name)
            subs = ([(f"{name} {s}", cmd.get_command(ctx, s)) for s in cmd.list_commands(ctx)]
                    if isinstance(cmd, click.Group) else [(name, cmd)])
            found |= {n for n, c in subs if any("--strict" in p.opts for p in c.params)}
    return found


# ------------------------------------------------------------------------------------------------- the folders
@dataclass
class Data:
    """The two crafted folders and what each bad file is."""

    faces: Path
    poses: Path
    face_preds: Path  # .pts predictions for `metrics`: the good faces and a 68-point one for the 19-point file
    pose_preds: Path  # an MPII JSON of predictions for `metrics`
    face_onnx: Path
    pose_onnx: Path
    face_ckpt: Path
    pose_ckpt: Path


def _faces(root: Path) -> tuple[Path, Path]:
    from cunet.data.formats import read_coco_keypoints, write_pts

    src = FIXTURES / "300w"
    faces, preds = root / "faces", root / "face-preds"
    faces.mkdir()
    preds.mkdir()
    records = {r.image: r.points for r in read_coco_keypoints(src / "test_300w.json", num_keypoints=68)}
    for copy in ("a", "b"):
        for name, points in records.items():
            stem = f"{copy}_{Path(name).stem}"
            shutil.copy(src / name, faces / f"{stem}.png")
            write_pts(faces / f"{stem}.pts", points)
            write_pts(preds / f"{stem}.pts", points + 2.0)
    first, second = sorted(records)
    shutil.copy(src / first, faces / "nopts.png")  # an image without annotation
    shutil.copy(src / second, faces / "p19.png")
    write_pts(faces / "p19.pts", records[second][:19])  # another landmark scheme
    write_pts(preds / "p19.pts", records[second])  # 68 predicted points against 19 true ones
    data = (src / first).read_bytes()
    (faces / "trunc.png").write_bytes(data[: len(data) // 2])  # a writer that stopped; no prediction for it
    write_pts(faces / "trunc.pts", records[first])
    return faces, preds


def _poses(root: Path) -> tuple[Path, Path]:
    src = FIXTURES / "mpii"
    poses, preds = root / "poses", root / "pose-preds"
    poses.mkdir()
    preds.mkdir()
    records = json.loads((src / "test_mpii.json").read_text())
    for r in records:
        shutil.copy(src / r["image"], poses / r["image"])
        (x1, y1), (x2, y2) = r["joints"][8], r["joints"][9]  # upper neck and head top (1-based, annotated)
        side = max(abs(x2 - x1), abs(y2 - y1), 10.0)
        r["headbox"] = [min(x1, x2) - side / 2, min(y1, y2) - side / 2, max(x1, x2) + side / 2, max(y1, y2) + side / 2]
    bad = [dict(records[0], joints=records[0]["joints"] + [[1.0, 1.0]] * 3),  # 19 joints
           dict(records[1], image="gone.jpg"),  # no such image
           dict(records[2], image="trunc.jpg")]  # a truncated JPEG
    data = (src / records[2]["image"]).read_bytes()
    (poses / "trunc.jpg").write_bytes(data[: len(data) * 2 // 3])
    for name in ("train.json", "valid.json"):
        (poses / name).write_text(json.dumps(records + bad))
    moved = [dict(r, joints=[[x + 3.0, y] for x, y in r["joints"]]) for r in records + bad]  # 3 px off
    (preds / "valid.json").write_text(json.dumps(moved))
    return poses, preds


@pytest.fixture(scope="module")
def data(tmp_path_factory, face_ckpt, pose_ckpt, quick_onnx) -> Data:
    if not (FIXTURES / "300w" / "test_300w.json").is_file() or not (FIXTURES / "mpii" / "test_mpii.json").is_file():
        pytest.skip("no real 300-W / MPII samples in ../shared/fixtures")
    root = tmp_path_factory.mktemp("batch-rule")
    faces, face_preds = _faces(root)
    poses, pose_preds = _poses(root)
    return Data(faces, poses, face_preds, pose_preds, quick_onnx("face"), quick_onnx("pose"), face_ckpt, pose_ckpt)


# --------------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    """One batch command on one crafted folder.

    argv: the command line (before --strict and --json), given the folders and a fresh output folder.
    bad: (file, problem pattern) of each file the command must skip, in the order met.
    used: how many good inputs the command must use (images, people, calibration images, training samples).
    count: the key of the command's JSON that holds that number.
    skipped_key: the key of its JSON that lists the skipped files.
    product: what the command writes when it finishes (relative to its output folder): --strict must stop before.
    """

    command: str
    task: str
    argv: Callable[[Data, Path], list[str]]
    bad: Callable[[Data], list[tuple[Path, str]]]
    used: int
    count: str
    skipped_key: str = "skipped"
    product: str | None = None

    @property
    def id(self) -> str:
        return f"{self.command}-{self.task}"


def _face_bad(d: Data) -> list[tuple[Path, str]]:
    return [(d.faces / "nopts.png", r"no \.pts annotation beside the image"),
            (d.faces / "p19.pts", r"19 points, the face task needs 68"),
            (d.faces / "trunc.png", r"truncated PNG")]


def _pose_bad(name: str) -> Callable[[Data], list[tuple[Path, str]]]:
    def bad(d: Data) -> list[tuple[Path, str]]:
        return [(d.poses / name, r"record 5: expected 16 joints, got 19"),
                (d.poses / name, r"record 6: image 'gone\.jpg' does not exist"),
                (d.poses / "trunc.jpg", r"truncated JPEG")]
    return bad


def _calib(model: str) -> Callable[[Data, Path], list[str]]:
    def argv(d: Data, out: Path) -> list[str]:
        folder = d.faces if model == "face" else d.poses
        return ["calibrate", str(getattr(d, f"{model}_onnx")), "--data", str(folder), "--samples", "16",
                "--cache-dir", str(out / "cache")]
    return argv


def _quant(model: str) -> Callable[[Data, Path], list[str]]:
    def argv(d: Data, out: Path) -> list[str]:
        return [*_calib(model)(d, out)[1:], "--recipe", "cpu", "-o", str(out / "int8.onnx")]
    return argv


def _train(task: str) -> Callable[[Data, Path], list[str]]:
    def argv(d: Data, out: Path) -> list[str]:
        folder = d.faces if task == "face" else d.poses
        extra = ["--val-data", str(folder)] if task == "face" else []  # a flat face folder is one split
        return ["train", "--task", task, "--data", str(folder), *extra, "--out", str(out / "run"), "--epochs", "1",
                "--layers", "1", "--order", "0", "--input-size", "64", "--batch-size", "2", "--threads", "1"]
    return argv


CASES = [
    Case("evaluate", "face", lambda d, o: ["evaluate", str(d.face_onnx), "--data", str(d.faces)], _face_bad, 4, "n"),
    Case("evaluate", "pose", lambda d, o: ["evaluate", str(d.pose_onnx), "--data", str(d.poses)],
         _pose_bad("valid.json"), 5, "n"),
    Case("calibrate", "face", _calib("face"), _face_bad, 4, "samples"),
    Case("calibrate", "pose", _calib("pose"), _pose_bad("train.json"), 5, "samples"),
    Case("quantize", "face", lambda d, o: ["quantize", *_quant("face")(d, o)], _face_bad, 4, "samples",
         product="int8.onnx"),
    Case("quantize", "pose", lambda d, o: ["quantize", *_quant("pose")(d, o)], _pose_bad("train.json"), 5,
         "samples", product="int8.onnx"),
    Case("bench", "face", lambda d, o: ["bench", str(d.face_onnx), "--data", str(d.faces), "--report",
                                        str(o / "report"), "--quick", "--iters", "1", "--calib-samples", "4",
                                        "--threads", "1", "--no-progress"], _face_bad, 4, "scored",
         product="report/bench.json"),
    Case("bench", "pose", lambda d, o: ["bench", str(d.pose_onnx), "--data", str(d.poses), "--report",
                                        str(o / "report"), "--quick", "--iters", "1", "--calib-samples", "4",
                                        "--threads", "1", "--no-progress"], _pose_bad("valid.json"), 5, "scored",
         product="report/bench.json"),
    Case("train", "face", _train("face"), _face_bad, 4, "train_samples", product="run/last.pt"),
    Case("train", "pose", _train("pose"),
         lambda d: [*_pose_bad("train.json")(d), *_pose_bad("valid.json")(d)[:2]], 5, "train_samples",
         product="run/last.pt"),
    # predict reads images only: an image without annotation is fine there, a truncated one is not
    Case("predict", "face", lambda d, o: ["predict", str(d.face_onnx), str(d.faces), "--out", str(o / "p"),
                                          "--no-draw"], lambda d: [(d.faces / "trunc.png", "truncated PNG")], 6,
         "images", "failed"),
    Case("predict", "pose", lambda d, o: ["predict", str(d.pose_onnx), str(d.poses), "--out", str(o / "p"),
                                          "--no-draw"], lambda d: [(d.poses / "trunc.jpg", "truncated JPEG")], 5,
         "images", "failed"),
    # metrics reads annotations only: the 19-point truth and the missing prediction are its bad files
    Case("metrics", "face", lambda d, o: ["metrics", "--task", "face", "--gt", str(d.faces), "--pred",
                                          str(d.face_preds)],
         lambda d: [(d.face_preds / "p19.pts", r"68 points but the ground truth .*p19\.pts has 19"),
                    (d.faces / "trunc.pts", r"no prediction")], 4, "n"),
    Case("metrics", "pose", lambda d, o: ["metrics", "--task", "pose", "--gt", str(d.poses / "valid.json"),
                                          "--pred", str(d.pose_preds / "valid.json")],
         lambda d: [(d.poses / "valid.json", r"record 5: expected 16 joints, got 19"),
                    (d.pose_preds / "valid.json", r"record 5: expected 16 joints, got 19")], 7, "n"),
]
#: The runs that go through a real `cunet` process as well (the others through `main()` in this process).
SUBPROCESS = {"evaluate-face"}
#: Heavy runs checked with --strict only (the rule is found before anything is built, the same code as bench-face).
STRICT_ONLY = {"bench-pose"}


#: Commands whose --strict means something else than "stop at the first bad file": they read one file.
OTHER_STRICT = {"check-trt": "reads one model; --strict turns its performance warnings into errors (issue 26)"}


def test_every_batch_command_has_cases():
    """Generated from the command table: the commands with --strict are exactly the promised batch commands (and the
    one-file commands listed in OTHER_STRICT), and each batch command has a face and a pose case."""
    assert _strict_commands() == BATCH_COMMANDS | set(OTHER_STRICT)
    assert {(c.command, c.task) for c in CASES} == {(cmd, t) for cmd in BATCH_COMMANDS for t in ("face", "pose")}


def _run(argv: list[str], real: bool, capsys) -> tuple[int, str, str]:
    if real:
        exe = Path(sys.executable).with_name("cunet")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cunet"]
        proc = subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=600)
        return proc.returncode, proc.stdout, proc.stderr
    from cunet.cli import main

    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_files_are_skipped_counted_and_exit_1(case: Case, data: Data, tmp_path, capsys, one_torch_thread):
    if case.id in STRICT_ONLY:
        pytest.skip("checked with --strict below")
    code, out, err = _run([*case.argv(data, tmp_path), "--json"], case.id in SUBPROCESS, capsys)
    assert "Traceback" not in err and code == 1, f"exit {code}\n{err}"
    result = json.loads(out)
    bad = case.bad(data)
    lines = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert len(lines) == len(bad), err
    for line, (file, problem) in zip(lines, bad):  # one line per bad file, in the order met
        assert line.startswith(f"skipped {file}: ") and re.search(problem, line), (line, file, problem)
    listed = result[case.skipped_key]
    assert [(s["file"], bool(re.search(p, s["problem"]))) for s, (_, p) in zip(listed, bad)] == \
           [(str(f), True) for f, _ in bad] and len(listed) == len(bad)
    assert result[case.count] == case.used  # the good ones, all of them, were used
    closing = CLOSING.match(err.strip().splitlines()[-1])
    assert closing and closing.groups() == (str(len(bad)), str(case.used)), err.strip().splitlines()[-1]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_strict_stops_at_the_first_bad_file(case: Case, data: Data, tmp_path, capsys, one_torch_thread):
    code, out, err = _run([*case.argv(data, tmp_path), "--json", "--strict"], case.id in SUBPROCESS, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    file, problem = case.bad(data)[0]
    assert code == 1 and out == "" and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith(f"error: {file}: ") and re.search(problem, lines[0]), err
    if case.product is not None:  # train stops before epoch 1, bench before building, quantize before writing
        assert not (tmp_path / case.product).exists()
