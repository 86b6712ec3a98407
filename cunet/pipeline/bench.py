"""`cunet bench`: every format and precision of one checkpoint, built, validated, scored and timed in one table.

From one checkpoint it builds what this machine can: PyTorch FP32 (the checkpoint itself), ONNX FP32, ONNX FP16 (when
a float16 converter is installed), INT8 with the `cpu` and the `tensorrt` recipe (run on ONNX Runtime's CPU
provider), OpenVINO rows (the FP32 export, the `openvino` recipe's IR, and the `tensorrt` recipe's Q/DQ file run
unchanged: one artifact for GPUs and Intel CPUs) where openvino (and nncf) are installed, and TensorRT engines where
TensorRT and a GPU exist (else their rows say "skipped" and why). Each row is
then validated (the INT8 `tensorrt` model must obey TensorRT's Q/DQ rules, every prediction must be finite, and
with `max_drop` the accuracy loss must stay within budget), scored on the dataset's test split with the same code as
`cunet evaluate`, and timed by `cunet.evaluate.profile.profile` in a child process: one process per artifact, so its
memory figures (`cunet.evaluate.memory`) are its own and not the sum of everything this process loaded before, and a
runtime crash costs one row. A row that fails to build, validate or run records the reason and the others go on.
Given an ONNX FP32 model instead of a checkpoint, bench skips export (and the PyTorch row) and needs no PyTorch.

Every row names what ran: backend, provider, device ("cpu" for every CPU row, the PyTorch row included; "cuda:N"
for engines) and precision. When the dataset's one split serves both calibration and scoring (a flat folder, a COCO
file), the calibration images are left out of the scored set, so Δ is never measured on the images INT8 was tuned
on; bench.json's "scored_images" says how many were scored.

`max_drop` makes bench a gate: it exits 1 when a row loses more than the budget against FP32 (in the metric's
points), when a row failed, or when one was skipped for any reason but missing hardware or nothing to run (a
missing package fails the gate: the row the budget is about was not measured).

Artifacts are built under `work` (default REPORT/artifacts) and reused when a stamp beside each says it was built
from the same inputs (`cunet.pipeline.bench_plan`); a stale one is rebuilt with a line saying why. Results go to
REPORT/bench.json, bench.csv and accuracy_latency.png, all written atomically. Δ is each row's metric minus the
ONNX FP32 row's (the PyTorch row's if ONNX FP32 failed), in metric points.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cunet.data.spec import Task
from cunet.errors import CunetError, OutputError, require_torch
from cunet.evaluate.memory import DEFINITIONS as MEMORY_DEFINITIONS
from cunet.io import check_writable, make_dirs, remove, write_json, write_text
from cunet.pipeline.bench_output import (FAILED, FAILED_VALIDATION, OK, ROW_KEYS, SKIPPED, plot_rows, print_rows,
                                         write_csv)
from cunet.pipeline.bench_plan import CALIB_METHOD, Artifact, SkipKind, plan, stale_reason, stamp_path
from cunet.runtime.ov_backend import ir_files_bytes

__all__ = ["BenchOptions", "BenchResult", "run_bench", "ROW_KEYS", "budget_drop", "gate_failures"]
#: The artifact Δ is measured against, and the fallback when it could not be built.
REFERENCES = ("onnx-fp32", "pytorch-fp32")
PROFILE_TIMEOUT_S = 1800


@dataclass(frozen=True)
class BenchOptions:
    """What `run_bench` builds and measures.

    Attributes:
        checkpoint: the training checkpoint (`.pt`), or an FP32 `.onnx` model (then nothing is exported).
        data: dataset root (calibration uses its training split, accuracy its test split).
        report: folder for bench.json, bench.csv and accuracy_latency.png.
        work: where artifacts are built (default REPORT/artifacts); up-to-date artifacts there are reused.
        max_drop: the accuracy a row may lose against FP32, in metric points (NME points up, PCKh points down);
            a row over it fails validation and `exit_code` is 1, as it is for a row that failed or was skipped for
            a reason other than missing hardware (`gate_failures`). None: no budget, no gate.
        threads: CPU threads for inference (evaluation and timing).
        batch: images per call when timing.
        iters: timed calls per artifact (None: 50, or 5 with `quick`).
        calib_samples: calibration images for the INT8 recipes (at most 8 with `quick`).
        quick: few timing iterations and calibration images (CI and smoke tests).
        progress: draw a progress bar on stderr.
        label: the machine's name in bench.json's environment (`cunet compare` columns; None: the host name).
        video: a 300-VW-layout video folder (faces): every row also gets its "jitter" and "video_nme" there
            (`cunet.pipeline.video_eval`, unsmoothed), so artifacts are compared for stability too.
        strict: stop at the first file of the data that cannot be used (checked before anything is built)
            instead of leaving it out of every row (`cunet.batch`).
    """

    checkpoint: str | os.PathLike
    data: str | os.PathLike
    report: str | os.PathLike = "bench-report"
    work: str | os.PathLike | None = None
    max_drop: float | None = None
    threads: int = 2
    batch: int = 1
    iters: int | None = None
    calib_samples: int = 64
    quick: bool = False
    progress: bool = True
    label: str | None = None
    video: str | os.PathLike | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        if self.threads < 1 or self.batch < 1 or self.calib_samples < 1:
            raise CunetError(f"threads, batch and calib_samples must be at least 1, got {self.threads}, "
                             f"{self.batch}, {self.calib_samples}")
        if self.iters is not None and self.iters < 1:
            raise CunetError(f"iters must be at least 1, got {self.iters}")
        if self.max_drop is not None and not math.isfinite(self.max_drop):
            raise CunetError(f"max_drop must be a finite number, got {self.max_drop}")

    @property
    def timed_iters(self) -> int:
        return self.iters or (5 if self.quick else 50)

    @property
    def warmup(self) -> int:
        return 1 if self.quick else 5

    @property
    def samples(self) -> int:
        return min(self.calib_samples, 8) if self.quick else self.calib_samples


@dataclass
class BenchResult:
    """What `run_bench` measured.

    Attributes:
        rows: one dict per artifact with the keys `ROW_KEYS` (bench.json's "rows").
        per_image: artifact → faces: per-image NME [N] as fractions; pose: per-person joint correctness [N, 16]
            (1 correct at PCKh@0.5, 0 wrong, NaN not annotated). Only artifacts that were scored.
        metric_name: "nme" (percent, lower is better) or "pckh@0.5" (percent, higher is better).
        exit_code: 1 when `max_drop` is set and `gate_failures` names a row, else 0.
        task: "face" or "pose".
        files: "json", "csv", "plot" → written paths.
        skipped: [{"file", "problem"}] of the data files every row left out (`cunet.batch`), found before the build.
        scored: the test samples every row is scored on.
    """

    rows: list[dict[str, Any]]
    per_image: dict[str, np.ndarray]
    metric_name: str
    exit_code: int
    task: str
    files: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    scored: int = 0


class _RowFailure(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _is_onnx(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


def budget_drop(metric_name: str, delta: float) -> float:
    """The accuracy lost for a Δ in metric points: NME rises when worse, PCKh falls."""
    return Task.of_metric(metric_name).loss(delta)


# ----------------------------------------------------------------------------------------------- measuring a row


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _score(art: Artifact, opts: BenchOptions, task: str, work: Path,
           exclude: tuple[str, ...]) -> tuple[dict[str, Any], np.ndarray]:
    from cunet.evaluate.accuracy import evaluate

    # scored once, from the predictions as saved (what `cunet metrics` would read): the number and its per-image errors
    return evaluate(art.path, opts.data, task=task, backend=art.backend, batch=8, threads=opts.threads,
                    save_predictions=work / "predictions" / art.name, per_image=True, device=art.device,
                    exclude=exclude)


def _profile_child(conn: Any, kwargs: dict[str, Any]) -> None:
    """The child process's side of `_profile`: run the library's profile and send back ("ok", report) or
    ("error", one line)."""
    from cunet.evaluate.profile import profile

    try:
        conn.send(("ok", profile(**kwargs)))
    except Exception as e:  # the parent turns any failure into this row's reason
        conn.send(("error", e.args[0] if isinstance(e, CunetError) and e.args else f"{type(e).__name__}: "
                                                                                    f"{_first_line(e)}"))
    finally:
        conn.close()


def _profile(art: Artifact, opts: BenchOptions) -> dict[str, Any]:
    # A fresh (spawned) child process per artifact: its memory is this artifact's alone, and a runtime crash
    # (TensorRT can abort the process) costs one row.
    kwargs = {"model_path": str(art.path), "backend": art.backend, "batch_sizes": (opts.batch,),
              "warmup": opts.warmup, "iters": opts.timed_iters, "threads": opts.threads, "device": art.device}
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_profile_child, args=(theirs, kwargs), daemon=True)
    child.start()
    theirs.close()
    try:
        if not ours.poll(PROFILE_TIMEOUT_S):
            raise _RowFailure(FAILED, f"profiling took longer than {PROFILE_TIMEOUT_S} s")
        try:
            status, report = ours.recv()
        except EOFError:  # the child died without a word: a crash inside a runtime
            child.join()
            raise _RowFailure(FAILED, f"profiling failed: its process died (exit {child.exitcode})") from None
    finally:
        ours.close()
        if child.is_alive():
            child.kill()
        child.join()
    if status != "ok":
        raise _RowFailure(FAILED, f"profiling failed: {report}")
    r = report["results"][0]
    total = r["latency_ms"]["total"]
    return {"p50_ms": total["p50"], "p99_ms": total["p99"], "throughput": r["throughput_ips"],
            "load_peak_mb": report["load_peak_mb"], "run_peak_mb": r["run_peak_mb"], "peak_mb": r["run_peak_mb"],
            "device_peak_mb": r["device_peak_mb"], "provider": report["provider"], "device": report["device"]}


def _video_scores(art: Artifact, opts: BenchOptions) -> dict[str, float]:
    """This artifact's jitter and NME (both %) on the video folder, tracked as `cunet evaluate` tracks."""
    from cunet.pipeline.video_eval import evaluate_videos

    result = evaluate_videos(art.path, opts.video, backend=art.backend, threads=opts.threads)
    return {"jitter": result["jitter"], "video_nme": result["nme"]}


def _validate(art: Artifact) -> None:
    if art.name == "onnx-int8-tensorrt":
        from cunet.compile.trt_rules import check_trt

        errors = [v for v in check_trt(art.path) if v.severity == "error"]
        if errors:
            raise _RowFailure(FAILED_VALIDATION, f"{len(errors)} TensorRT Q/DQ rule violation(s), first: "
                                                 f"[{errors[0].rule}] {errors[0].message}")


def _run_row(art: Artifact, opts: BenchOptions, task: str, work: Path, built: dict[str, str],
             step: Callable[[str], None], say: Callable[[str], None] = lambda line: None,
             exclude: tuple[str, ...] = ()) -> tuple[dict[str, Any], np.ndarray | None]:
    row: dict[str, Any] = {k: None for k in ROW_KEYS}
    row.update(artifact=art.name, format=art.fmt, precision=art.precision, backend=art.backend, status=OK,
               path=str(art.path), metric=Task(task).metric, reused=False)
    per_image = None
    try:
        step("build")
        if art.skip:
            row["skip_kind"] = art.skip_kind.value if art.skip_kind else None
            raise _RowFailure(SKIPPED, art.skip)
        if art.needs and built.get(art.needs) != OK:
            raise _RowFailure(FAILED, f"needs {art.needs}, which {built.get(art.needs, 'was not built')}")
        if art.build is not None:
            key = art.key() if art.key else {}
            why = stale_reason(art.path, key)
            if why is None:
                row["reused"] = True
            else:
                if art.path.is_file():  # an artifact of other inputs (another TensorRT, GPU, model): say so
                    say(f"{art.name}: rebuilding {art.path.name}: {why}")
                remove(stamp_path(art.path))
                art.build()
                write_json(stamp_path(art.path), key)
        row["size_mb"] = ir_files_bytes(art.path) / 1e6
        _validate(art)
        step("score")
        result, per_image = _score(art, opts, task, work, exclude)
        row.update(value=float(result[row["metric"]]), nonfinite=result["nonfinite"], provider=result["provider"],
                   device=result["device"])
        if result["nonfinite"]:
            raise _RowFailure(FAILED_VALIDATION, f"{result['nonfinite']} of {result['n']} predictions are not "
                                                 "finite (NaN or inf); they count as failures in its "
                                                 f"{row['metric']}")
        if not math.isfinite(row["value"]):
            raise _RowFailure(FAILED_VALIDATION, f"its {row['metric']} is not finite")
        if opts.video is not None:
            step("video")
            row.update(_video_scores(art, opts))
        step("time")
        row.update(_profile(art, opts))
    except OutputError:  # the report or work folder, not this artifact: every later row would meet it too
        raise
    except _RowFailure as e:
        row["status"], row["reason"] = e.status, e.reason
    except CunetError as e:
        row["status"], row["reason"] = FAILED, _first_line(e)
    except Exception as e:  # a bug in one path must not hide the other rows; its traceback is kept on disk
        log = work / f"{art.name}.error.txt"
        write_text(log, traceback.format_exc())
        row["status"], row["reason"] = FAILED, f"{type(e).__name__}: {_first_line(e)} (traceback in {log})"
    built[art.name] = row["status"]
    return row, per_image


def _apply_budget(rows: list[dict[str, Any]], metric: str, max_drop: float | None) -> str | None:
    ref = next((r for name in REFERENCES for r in rows if r["artifact"] == name and r["value"] is not None
                and r["status"] == OK), None)
    for r in rows:
        if ref is None or r["value"] is None:
            continue
        r["delta"] = r["value"] - ref["value"]
        if max_drop is None or r is ref:
            continue
        lost = budget_drop(metric, r["delta"])
        if lost > max_drop:
            over = f"loses {lost:.4g} {metric} points > --max-drop {max_drop:g}"
            r["status"] = FAILED_VALIDATION
            r["reason"] = f"{r['reason']}; {over}" if r["reason"] else over
    return ref["artifact"] if ref else None


def gate_failures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that fail a `--max-drop` gate: over budget, not finite, failed, or skipped for a reason other than
    missing hardware or nothing to run (a gate that passes when the rows it is about were never measured would say
    nothing). Without a reference row nothing was measured against FP32, so every row counts."""
    excused = {SkipKind.HARDWARE.value, SkipKind.NOT_APPLICABLE.value}
    return [r for r in rows if r["status"] in (FAILED, FAILED_VALIDATION)
            or (r["status"] == SKIPPED and r.get("skip_kind") not in excused)]


# ---------------------------------------------------------------------------------------------------- outputs


def _calibration(opts: BenchOptions, spec: Any) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """(the images the INT8 rows are calibrated on, (selected, requested)), known before any row is built: the
    selection depends on the data, the model's task and crop rule (`spec`) and the sample count only. Nothing and
    None where the data holds no calibration images."""
    from cunet.calib.reader import select_calibration_images

    try:
        selection = select_calibration_images(opts.data, spec, opts.samples)
    except CunetError:
        return (), None
    return tuple(str(p) for p, _ in selection.items), (len(selection.items), opts.samples)


def _preprocess_spec(ckpt: Path, loaded: dict[str, Any] | None) -> Any:
    """The preprocessing the INT8 rows calibrate with: the ONNX input's metadata, or what export will write."""
    from cunet.calib.reader import PreprocessSpec, read_preprocess_spec

    if loaded is None:
        return read_preprocess_spec(ckpt)
    from cunet.runtime.meta import ModelMeta

    meta = ModelMeta.from_checkpoint(loaded)
    return PreprocessSpec("image", meta.input_size, meta.mean, meta.std, meta.task, meta.stretch, meta.box_margin)


# ----------------------------------------------------------------------------------------------------- the run


def run_bench(opts: BenchOptions) -> BenchResult:
    """Build, validate, score and time every artifact of `opts.checkpoint`; write the report files.

    Returns:
        A `BenchResult` (rows, per-image errors for CED plots, metric name, exit code).

    Raises:
        CunetError: the checkpoint or the data folder is unusable (per-artifact failures become rows instead).

    Called without a write policy (from Python), it runs under the one `cunet bench --report/--work` has
    (`cunet.io`), so a later CLI run may reuse and replace what this one wrote.
    """
    from cunet.io import Output, WritePolicy, writing

    outputs = [Output(Path(p), "cunet bench", option, folder=True)
               for p, option in ((opts.report, "--report"), (opts.work, "--work")) if p is not None]
    inputs = [opts.checkpoint, opts.data, *([opts.video] if opts.video is not None else [])]
    with writing(WritePolicy(outputs, inputs), default=True):
        return _run(opts)


def _run(opts: BenchOptions) -> BenchResult:
    from cunet.evaluate.profile import environment

    report = Path(opts.report)
    files = {"json": str(report / "bench.json"), "csv": str(report / "bench.csv"),
             "plot": str(report / "accuracy_latency.png")}
    check_writable(files.values())  # before minutes of building: a file of someone else's where the report goes
    ckpt = Path(opts.checkpoint)
    loaded = None
    if _is_onnx(ckpt):
        from cunet.runtime.meta import read_onnx_meta

        task = read_onnx_meta(ckpt).task
    else:
        require_torch(f"{ckpt}: a .pt checkpoint")
        from cunet.model.checkpoint import load_checkpoint

        loaded = load_checkpoint(ckpt)
        task = loaded["task"]
    if not Path(opts.data).exists():
        raise CunetError(f"{opts.data}: data folder not found")
    from cunet.batch import Skips
    from cunet.data.check import check_splits
    from cunet.data.layout import detect_layout

    # The layouts every command reads (a flat folder, a COCO .json, ...), and the batch rule, up front: the files
    # every row would leave out are found once, before anything is built (strict: the first stops the bench).
    layout = detect_layout(opts.data, task)
    skips = Skips(opts.strict)
    splits = ["test"] + (["train"] if layout.one_split or any(sp == "train" for sp, _ in layout.parts) else [])
    scored = check_splits(opts.data, task, splits, skips)["test"]
    if opts.video is not None:
        from cunet.data.video import read_video_dataset

        if task != "face":
            raise CunetError(f"{opts.video}: video datasets (300-VW) are faces; this is a {task} model")
        read_video_dataset(opts.video)
    work = Path(opts.work) if opts.work is not None else report / "artifacts"
    make_dirs(work)
    metric = Task(task).metric
    calib_images, calib = _calibration(opts, _preprocess_spec(ckpt, loaded))
    # One split serving calibration and scoring: the images INT8 was calibrated on are not scored (issue 23).
    exclude = calib_images if layout.one_split else ()
    artifacts = plan(opts, work, ckpt)
    check_writable(p for a in artifacts if a.build is not None for p in (a.path, stamp_path(a.path)))  # artifacts
    rows: list[dict[str, Any]] = []
    per_image: dict[str, np.ndarray] = {}
    built: dict[str, str] = {}
    with _Progress(opts.progress, len(artifacts)) as bar:
        for art in artifacts:
            row, errors = _run_row(art, opts, task, work, built, lambda what, name=art.name: bar.describe(
                f"{name}: {what}"), bar.say, exclude)
            bar.advance()
            rows.append(row)
            if errors is not None:
                per_image[art.name] = errors
    ref = _apply_budget(rows, metric, opts.max_drop)
    gate = gate_failures(rows) if opts.max_drop is not None else []
    exit_code = 1 if gate else 0
    scored_images = next((len(v) for v in per_image.values()), None)
    write_json(files["json"], {
        "task": task, "metric": metric, "checkpoint": str(ckpt), "data": str(opts.data), "reference": ref,
        "max_drop": opts.max_drop, "exit_code": exit_code, "gate_failures": [r["artifact"] for r in gate],
        "scored_images": scored_images, "calibration_images_left_out": len(exclude),
        "settings": {"threads": opts.threads, "batch": opts.batch, "iters": opts.timed_iters, "warmup": opts.warmup,
                     "calib_samples": opts.samples, "calib_samples_used": None if calib is None else calib[0],
                     "calib_method": CALIB_METHOD, "quick": opts.quick,
                     "work": str(work), "video": None if opts.video is None else str(opts.video)},
        "memory_definitions": MEMORY_DEFINITIONS,
        "environment": {**environment(), **({"label": opts.label} if opts.label else {})},
        "skipped": skips.to_json(), "scored": scored,
        "rows": rows,
    })
    write_csv(Path(files["csv"]), rows)
    plot_rows(Path(files["plot"]), rows, metric, opts.batch, opts.threads)
    print_rows(rows, metric, ref, calib, scored_images, len(exclude))
    return BenchResult(rows, per_image, metric, exit_code, task, files, skips.to_json(), scored)


class _Progress:
    """A rich progress bar on stderr: one tick per artifact, the description names the current step."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._bar: Any = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from cunet.console import console

            self._bar = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console(), transient=True)
            self._task = self._bar.add_task("bench", total=total)

    def __enter__(self) -> "_Progress":
        if self._bar is not None:
            self._bar.start()
        return self

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def say(self, line: str) -> None:
        """One line on stderr above the bar (or alone without one)."""
        from cunet.console import console

        (self._bar.console if self._bar is not None else console()).print(line, markup=False, highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
