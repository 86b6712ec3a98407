"""`cunet demo`: the whole mission on built-in synthetic data, on this machine, with no download and no GPU.

Five stages, each a library call the other commands also make:

    [1/5] data      cunet.data.synth.synthesize      → OUT/data      (300-W or MPII layout)
    [2/5] train     cunet.train.trainer.train        → OUT/run       (best.pt, last.pt, log.csv)
    [3/5] bench     cunet.pipeline.bench.run_bench   → OUT/artifacts (ONNX FP32, INT8 cpu, tensorrt and openvino recipes,
                                                       TensorRT engines where a GPU and TensorRT exist), every
                                                       artifact evaluated and profiled → OUT/report/bench.*
    [4/5] examples  cunet.evaluate.report            → OUT/report/examples_*.png (predicted vs true landmarks)
    [5/5] report    cunet.evaluate.report            → OUT/report/report.md, report.json, ced.png / pckh.png

Re-running reuses every finished stage. Each stage leaves a stamp (`.demo-stamp.json`) holding the settings it was
built from, including the stamp of the stage before it, and the seconds it took; a stage whose stamp matches and
whose outputs exist is reused, anything else is rebuilt along with every stage after it. Data is synthesised into
a temporary folder and renamed into place, so a half-written dataset is never mistaken for a finished one. An
interrupted training run resumes from `last.pt`, and so does a finished one given another `--minutes` (the budget
counts over resumes). `--fresh` removes the demo's folders first.

The demo refuses to write into a non-empty folder it did not create (there is a `.cunet-demo` marker in the ones
it did), so a mistyped `--out` never deletes anyone's files. The marker is also the demo's proof that the files below
it are its own (`cunet.io.adopt`), for folders made before every command kept a `.cunet-outputs` manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cunet
from cunet.errors import CunetError
from cunet.io import adopt, make_dirs, sha256_file, write_bytes, write_json, write_text

__all__ = ["DemoOptions", "DemoPlan", "DemoResult", "StageRecord", "plan_demo", "run_demo", "STAGES"]

STAGES = ("data", "train", "bench", "examples", "report")
_MARKER = ".cunet-demo"
_STAMP = ".demo-stamp.json"
_EXAMPLES_STAMP = ".demo-examples.json"
#: Test images drawn per example picture (a 4 x 2 grid).
_EXAMPLES = 8

#: Called with one line of the stage log (the CLI prints it on stderr).
Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    """What `cunet demo` was asked for.

    Attributes:
        out: the demo folder (data, run, artifacts, report below it).
        task: "face" (synthetic 300-W faces, NME) or "pose" (synthetic MPII people, PCKh).
        quick: tiny data, 1 epoch, few latency iterations: the end-to-end check CI runs in under a minute.
        fresh: delete the demo's folders first and rebuild everything.
        minutes: training budget in minutes (None: the plan's default); training stops after the epoch that
            crosses it.
        threads: CPU threads for inference and profiling (the machines this is measured on have 2 cores).
        progress: show progress bars (stderr).
    """

    out: Path = Path("cunet-demo")
    task: str = "face"
    quick: bool = False
    fresh: bool = False
    minutes: float | None = None
    threads: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.task not in ("face", "pose"):
            raise CunetError(f"unknown task {self.task!r}: choose face or pose")
        if self.minutes is not None and not self.minutes > 0:
            raise CunetError(f"--minutes must be positive, got {self.minutes}")
        if self.threads < 1:
            raise CunetError(f"threads must be at least 1, got {self.threads}")


@dataclass(frozen=True)
class DemoPlan:
    """The settings every stage is built from (recorded in the stamps and the report).

    The defaults were measured on the project's 2-core CPU machines to fit the whole face demo in 10 minutes; see
    the README for the numbers. Training options left as None take the variant's tuned recipe
    (`cunet.train.trainer.RECIPES`); the report lists the values used. `max_drop` is the accuracy budget of the
    INT8 rows, in metric points against FP32 (NME percentage points for faces, PCKh percentage points for poses);
    `--quick` sets none, because one epoch of training leaves a model whose accuracy means nothing.
    """

    task: str
    n: int
    image_size: int
    seed: int
    difficulty: float
    variant: str
    overrides: dict[str, Any]
    epochs: int | None
    batch_size: int | None
    lr: float | None
    optimizer: str | None
    minutes: float | None
    threads: int
    iters: int | None
    calib_samples: int
    max_drop: float | None
    quick: bool

    def data_key(self) -> dict[str, Any]:
        return {"task": self.task, "n": self.n, "image_size": self.image_size, "seed": self.seed,
                "difficulty": self.difficulty, "cunet": cunet.__version__}

    def train_key(self) -> dict[str, Any]:
        return {"variant": self.variant, "overrides": self.overrides, "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "optimizer": self.optimizer, "seed": self.seed,
                "minutes": self.minutes}

    def bench_key(self) -> dict[str, Any]:
        return {"threads": self.threads, "iters": self.iters, "calib_samples": self.calib_samples,
                "max_drop": self.max_drop, "quick": self.quick}


def plan_demo(opts: DemoOptions) -> DemoPlan:
    """The settings of a demo run: the measured defaults, or the tiny `--quick` ones."""
    face = opts.task == "face"
    if opts.quick:
        return DemoPlan(task=opts.task, n=24, image_size=96, seed=0, difficulty=0.5,
                        variant="cunet-tiny" if face else "cunet-tiny-pose", overrides={"input_size": 64},
                        epochs=1, batch_size=8, lr=None, optimizer=None, minutes=opts.minutes,
                        threads=opts.threads, iters=5, calib_samples=8, max_drop=None, quick=True)
    return DemoPlan(task=opts.task, n=600 if face else 400, image_size=128 if face else 192, seed=0,
                    difficulty=0.5, variant="cunet-tiny" if face else "cunet-tiny-pose", overrides={},
                    epochs=None, batch_size=None, lr=None, optimizer=None,
                    minutes=opts.minutes if opts.minutes is not None else 5.0, threads=opts.threads, iters=None,
                    calib_samples=64, max_drop=1.0 if face else 5.0, quick=False)


@dataclass
class StageRecord:
    """One stage of this run: how long it took now, whether it was reused, how long it took to build."""

    stage: str
    seconds: float
    reused: bool
    built_seconds: float
    detail: str = ""


@dataclass
class DemoResult:
    """What `run_demo` produced. `exit_code` is 1 when an INT8 row lost more accuracy than the budget."""

    out: Path
    report_dir: Path
    report: dict[str, Any]
    stages: list[StageRecord] = field(default_factory=list)
    exit_code: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "report_dir": str(self.report_dir),
                "report_md": str(self.report_dir / "report.md"), "exit_code": self.exit_code,
                "seconds": self.seconds, "stages": [dataclasses.asdict(s) for s in self.stages],
                "rows": self.report["rows"], "budget": self.report["budget"], "metric": self.report["metric"]}


# ---------------------------------------------------------------------------------------------------- stamps
def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_stamp(path: Path) -> dict[str, Any] | None:
    """A stamp file's content, or None when it is missing or unreadable (then the stage is rebuilt)."""
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _claim(out: Path, fresh: bool) -> None:
    """Make `out` the demo's folder, refusing a non-empty folder the demo did not create."""
    if out.exists() and not out.is_dir():
        raise CunetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / _MARKER).is_file():
        raise CunetError(f"{out}: folder is not empty and was not made by `cunet demo`; choose another --out")
    if (out / _MARKER).is_file():
        adopt(p for p in out.rglob("*") if p.is_file())
    make_dirs(out)
    write_text(out / _MARKER, "This folder was made by `cunet demo`; the demo may delete its subfolders.\n")
    if fresh:
        for name in ("data", "run", "artifacts", "report", ".data-partial"):
            if (out / name).exists():
                shutil.rmtree(out / name)


class _Stages:
    """The stage log: numbered lines, per-stage timing, reuse bookkeeping."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.records: list[StageRecord] = []

    def start(self, name: str, what: str) -> float:
        self.log(f"[{STAGES.index(name) + 1}/{len(STAGES)}] {name}: {what}")
        return time.perf_counter()

    def done(self, name: str, t0: float, built_seconds: float | None = None, reused: bool = False,
             detail: str = "") -> StageRecord:
        seconds = time.perf_counter() - t0
        rec = StageRecord(name, round(seconds, 2), reused, round(built_seconds if built_seconds is not None
                                                                  else seconds, 2), detail)
        self.records.append(rec)
        if reused:
            self.log(f"      reused ({detail}; built in {rec.built_seconds:.1f} s)")
        else:
            self.log(f"      done in {seconds:.1f} s" + (f" ({detail})" if detail else ""))
        return rec


# ---------------------------------------------------------------------------------------------------- stages
def _stage_data(out: Path, plan: DemoPlan, st: _Stages) -> tuple[Path, dict[str, Any]]:
    from cunet.data.synth import synthesize

    data = out / "data"
    key = plan.data_key()
    stamp = _read_stamp(data / _STAMP)
    what = "faces (300-W layout)" if plan.task == "face" else "people (MPII JSON)"
    if stamp is not None and stamp.get("key") == key:
        t0 = st.start("data", f"synthetic {what} in {data}")
        st.done("data", t0, stamp["seconds"], reused=True, detail=_data_detail(stamp["summary"]))
        return data, stamp
    t0 = st.start("data", f"synthesizing {plan.n} images of {what}, seed {plan.seed} → {data}")
    partial = out / ".data-partial"
    if partial.exists():
        shutil.rmtree(partial)
    summary = synthesize(partial, plan.task, n=plan.n, seed=plan.seed, difficulty=plan.difficulty,
                         image_size=plan.image_size)
    summary["out"] = str(data)
    stamp = {"stage": "data", "key": key, "summary": summary, "seconds": time.perf_counter() - t0}
    write_json(partial / _STAMP, stamp)
    if data.exists():
        shutil.rmtree(data)
    partial.rename(data)
    st.done("data", t0, detail=_data_detail(summary))
    return data, stamp


def _data_detail(summary: dict[str, Any]) -> str:
    """"19 train / 5 valid images (21 / 6 people)": the trainer counts people for poses, so both are said here."""
    test = ", ".join(f"{v} {k}" for k, v in summary["test"].items())
    people = summary.get("people")
    extra = f" ({people['train']} / {people['valid']} people)" if people else ""
    return f"{summary['train']} train / {test} images{extra}"


def _stage_train(out: Path, data: Path, data_stamp: dict, plan: DemoPlan, st: _Stages,
                 progress: bool) -> tuple[Path, dict[str, Any]]:
    from cunet.train.trainer import TrainOptions, resolve_options, train

    run = out / "run"
    key = {**plan.train_key(), "data": _digest(data_stamp["key"])}
    stamp = _read_stamp(run / _STAMP)
    same = stamp is not None and stamp.get("key") == key
    if same and stamp.get("finished") and (run / "best.pt").is_file():
        t0 = st.start("train", f"{plan.variant} in {run}")
        st.done("train", t0, stamp["seconds"], reused=True, detail=_train_detail(stamp["result"]))
        return run, stamp
    # Only the time budget changed: the trainer counts it over resumes, so the run continues (or stops at once).
    budget_only = stamp is not None and {**stamp.get("key", {}), "minutes": plan.minutes} == key
    resume = (same or budget_only) and (run / "last.pt").is_file()
    opts = TrainOptions(task=plan.task, data=str(data), out=str(run), variant=plan.variant, epochs=plan.epochs,
                        batch_size=plan.batch_size, lr=plan.lr, optimizer=plan.optimizer, resume=resume,
                        seed=plan.seed, workers=0, sigma=None, overrides=dict(plan.overrides), bits_w=None,
                        bits_a=None, bits_g=None, max_minutes=plan.minutes, device="cpu", progress=progress)
    used = resolve_options(opts)
    budget = f", at most {plan.minutes:g} min" if plan.minutes else ""
    verb = ("resuming the interrupted run of" if same else "continuing (new --minutes) the run of") if resume \
        else "training"
    t0 = st.start("train", f"{verb} {plan.variant}: {used.epochs} epoch(s){budget}, batch {used.batch_size}, "
                           f"{used.optimizer} lr {used.lr:g} → {run}")
    if not resume:
        if run.exists():
            shutil.rmtree(run)
        stamp = {"stage": "train", "key": key, "finished": False, "seconds": 0.0}
    stamp.update(key=key, finished=False)
    stamp["options"] = {k: used.to_dict()[k] for k in ("variant", "epochs", "batch_size", "lr", "optimizer",
                                                       "milestones", "sigma", "seed", "max_minutes", "overrides")}
    write_json(run / _STAMP, stamp)
    try:
        result = train(opts)
    finally:  # an interrupted run still records the time it spent, so the report's build time stays honest
        stamp["seconds"] = stamp.get("seconds", 0.0) + (time.perf_counter() - t0)
        write_json(run / _STAMP, stamp)
    summary = {"best": str(result.best), "last": str(result.last), "best_metric": float(result.best_metric),
               "metric_name": result.metric_name, "epochs": len(result.history), "train_seconds": result.seconds,
               "history": result.history}
    stamp.update(finished=True, result=summary, best_sha256=sha256_file(result.best)[:16])
    write_json(run / _STAMP, stamp)
    st.done("train", t0, stamp["seconds"], detail=_train_detail(summary))
    return run, stamp


def _train_detail(result: dict[str, Any]) -> str:
    return f"{result['epochs']} epoch(s), best validation {result['metric_name']} {result['best_metric']:.3f}"


def _stage_bench(out: Path, data: Path, train_stamp: dict, plan: DemoPlan, st: _Stages,
                 progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np

    from cunet.pipeline.bench import BenchOptions, run_bench

    work, report = out / "artifacts", out / "report"
    best = Path(train_stamp["result"]["best"])
    key = {**plan.bench_key(), "checkpoint": train_stamp["best_sha256"]}
    stamp = _read_stamp(work / _STAMP)
    per_image_file = work / "per_image.npz"
    if (stamp is not None and stamp.get("key") == key and (report / "bench.json").is_file()
            and per_image_file.is_file()):
        t0 = st.start("bench", f"artifacts in {work}")
        with np.load(per_image_file) as z:
            per_image = {k: z[k] for k in z.files}
        st.done("bench", t0, stamp["seconds"], reused=True, detail=_bench_detail(stamp["rows"]))
        return stamp, per_image
    t0 = st.start("bench", "export → calibrate → INT8 (cpu, tensorrt, openvino recipes) → TensorRT where possible → "
                           f"evaluate + profile every artifact → {work}")
    res = run_bench(BenchOptions(checkpoint=str(best), data=str(data), report=str(report), work=str(work),
                                 max_drop=plan.max_drop, threads=plan.threads, batch=1, iters=plan.iters,
                                 calib_samples=plan.calib_samples, quick=plan.quick, progress=progress))
    per_image = {k: np.asarray(v) for k, v in res.per_image.items()}
    buf = io.BytesIO()
    np.savez(buf, **per_image)
    write_bytes(per_image_file, buf.getvalue())
    stamp = {"stage": "bench", "key": key, "rows": res.rows, "metric_name": res.metric_name,
             "exit_code": res.exit_code, "seconds": time.perf_counter() - t0}
    write_json(work / _STAMP, stamp)
    st.done("bench", t0, detail=_bench_detail(res.rows))
    return stamp, per_image


def _bench_detail(rows: list[dict]) -> str:
    ok = sum(r.get("status") == "ok" for r in rows)
    return f"{len(rows)} artifact(s), {ok} ok"


def _pick_examples(rows: list[dict], metric: str) -> list[dict]:
    """The FP32 ONNX row and the most accurate INT8 row that ran (the pictures compare those two)."""
    ok = [r for r in rows if r.get("path") and r.get("value") is not None]
    fp32 = [r for r in ok if r.get("precision") == "fp32" and r.get("format") == "onnx"] or \
           [r for r in ok if r.get("precision") == "fp32"]
    int8 = [r for r in ok if r.get("precision") == "int8"]
    from cunet.data.spec import Task

    sign = -1 if Task.of_metric(metric).higher_is_better else 1
    return fp32[:1] + sorted(int8, key=lambda r: sign * r["value"])[:1]


def _stage_examples(out: Path, data: Path, plan: DemoPlan, bench_stamp: dict, st: _Stages) -> list:
    from cunet.data.dataset import load_samples
    from cunet.evaluate.report import Example, predict_examples

    report = out / "report"
    rows = _pick_examples(bench_stamp["rows"], bench_stamp["metric_name"])
    key = {"bench": _digest(bench_stamp["key"]), "rows": [r["artifact"] for r in rows]}
    stamp = _read_stamp(report / _EXAMPLES_STAMP)
    if stamp is not None and stamp.get("key") == key and all((report / e["png"]).is_file() for e in stamp["examples"]):
        t0 = st.start("examples", f"test images with predicted vs true landmarks in {report}")
        examples = [Example(**{**e, "png": str(report / e["png"])}) for e in stamp["examples"]]
        st.done("examples", t0, stamp["seconds"], reused=True, detail=f"{len(examples)} picture(s)")
        return examples
    names = ", ".join(r["artifact"] for r in rows) or "none"
    t0 = st.start("examples", f"{_EXAMPLES} test images with predicted vs true landmarks from {names}")
    samples = load_samples(data, plan.task, "test").samples
    step = max(1, len(samples) // _EXAMPLES)
    chosen = samples[::step][:_EXAMPLES]
    examples = []
    for r in rows:
        png = report / f"examples_{_slug(r['artifact'])}.png"
        title = f"{r['artifact']} ({r['precision']}, {r['backend']})"
        examples.append(predict_examples(r["path"], chosen, png, title, threads=plan.threads, artifact=r["artifact"]))
    stamp = {"stage": "examples", "key": key, "seconds": time.perf_counter() - t0,
             "examples": [dataclasses.asdict(e) | {"png": Path(e.png).name} for e in examples]}
    write_json(report / _EXAMPLES_STAMP, stamp)
    st.done("examples", t0, detail=f"{len(examples)} picture(s)")
    return examples


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "model"


def _budget(rows: list[dict], metric: str, max_drop: float | None) -> dict[str, Any]:
    """How much the INT8 rows that were scored lost against FP32, in metric points (positive = worse).

    A row the bench marked "failed validation" for exceeding the budget still counts: it was scored.
    """
    from cunet.pipeline.bench import budget_drop

    drops = {r["artifact"]: budget_drop(metric, float(r["delta"])) for r in rows
             if r.get("precision") == "int8" and r.get("delta") is not None}
    worst = max(drops, key=drops.get) if drops else None
    out = {"metric": metric, "max_drop": max_drop, "rows": list(drops), "drops": drops, "worst": worst,
           "worst_drop": drops[worst] if worst else None,
           "within": max_drop is None or worst is None or drops[worst] <= max_drop}
    if max_drop is None:
        out["why"] = "--quick trains for one epoch, so the accuracy of its models (and what INT8 loses) means nothing"
    return out


def _stage_report(out: Path, plan: DemoPlan, data_stamp: dict, train_stamp: dict, bench_stamp: dict,
                  per_image: dict, examples: list, st: _Stages, rebuilt: bool) -> dict[str, Any]:
    from cunet.evaluate.profile import environment
    from cunet.evaluate.report import ReportInputs, plot_accuracy, write_report

    report = out / "report"
    if not rebuilt and (report / "report.json").is_file() and (report / "report.md").is_file():
        t0 = st.start("report", f"{report / 'report.md'}")
        doc = json.loads((report / "report.json").read_text(encoding="utf-8"))
        built = next((s["built_seconds"] for s in doc.get("stages", []) if s["stage"] == "report"), 0.0)
        st.done("report", t0, built, reused=True, detail="every stage before it was reused")
        return doc
    t0 = st.start("report", f"report.md, report.json and pictures → {report}")
    metric = bench_stamp["metric_name"]
    pictures: dict[str, str] = {}
    if per_image:
        name = "ced.png" if plan.task == "face" else "pckh.png"
        plot_accuracy(plan.task, per_image, report / name)
        pictures["ced" if plan.task == "face" else "pckh"] = name
    if (report / "accuracy_latency.png").is_file():
        pictures["accuracy_latency"] = "accuracy_latency.png"
    used = train_stamp.get("options", {})  # the trainer's recipe fills the plan's None training options
    settings = {**{k: (used.get(k) if v is None and k in used else v) for k, v in dataclasses.asdict(plan).items()},
                "data": str(out / "data"), "dataset": _data_detail(data_stamp["summary"]),
                "checkpoint": train_stamp["result"]["best"]}
    train_result = train_stamp["result"]
    training = {k: train_result[k] for k in ("best_metric", "metric_name", "epochs", "history", "train_seconds")}
    training["options"] = train_stamp.get("options", {})
    stages = [dataclasses.asdict(s) for s in st.records]
    stages.append({"stage": "report", "seconds": None, "reused": False, "built_seconds": None, "detail": ""})
    what = "faces (300-W format)" if plan.task == "face" else "human pose (MPII format)"
    inputs = ReportInputs(
        title=f"cunet demo — {plan.variant} on synthetic {what}{' (quick)' if plan.quick else ''}",
        task=plan.task, metric_name=metric, rows=bench_stamp["rows"],
        budget=_budget(bench_stamp["rows"], metric, plan.max_drop), settings=settings,
        environment=environment("cpu"), stages=stages, training=training, pictures=pictures, examples=examples)
    seconds = time.perf_counter() - t0
    stages[-1].update(seconds=round(seconds, 2), built_seconds=round(seconds, 2))
    doc = write_report(report, inputs)
    st.done("report", t0)
    return doc


# ---------------------------------------------------------------------------------------------------- the run
def run_demo(opts: DemoOptions, log: Log = print) -> DemoResult:
    """Run (or reuse) every stage and return where the report is; see the module docstring.

    Raises:
        CunetError: an unusable `out` folder, or any stage's user-facing error (named by that stage).

    Called without a write policy (from Python), it runs under the one `cunet demo --out` has (`cunet.io`).
    """
    from cunet.io import Output, WritePolicy, writing

    with writing(WritePolicy([Output(Path(opts.out), "cunet demo", "--out", folder=True)]), default=True):
        return _run(opts, log)


def _run(opts: DemoOptions, log: Log) -> DemoResult:
    start = time.perf_counter()
    plan = plan_demo(opts)
    _claim(opts.out, opts.fresh)
    st = _Stages(log)
    data, data_stamp = _stage_data(opts.out, plan, st)
    _, train_stamp = _stage_train(opts.out, data, data_stamp, plan, st, opts.progress)
    bench_stamp, per_image = _stage_bench(opts.out, data, train_stamp, plan, st, opts.progress)
    examples = _stage_examples(opts.out, data, plan, bench_stamp, st)
    rebuilt = not all(r.reused for r in st.records)
    doc = _stage_report(opts.out, plan, data_stamp, train_stamp, bench_stamp, per_image, examples, st, rebuilt)
    budget = doc["budget"]
    exit_code = max(int(bench_stamp.get("exit_code") or 0), 0 if budget["within"] else 1)
    return DemoResult(opts.out, opts.out / "report", doc, st.records, exit_code, time.perf_counter() - start)
