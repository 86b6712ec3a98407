"""`cunet bench`: every format and precision of a checkpoint in one table (accuracy, size, latency, memory)."""

from __future__ import annotations

import click

from cunet.commands._common import console, emit_json, json_option, output_option

__all__ = ["bench"]


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", required=True, type=click.Path(),
              help="Dataset (any layout `cunet data check` reads; a flat folder or COCO .json serves both): INT8 "
                   "calibration uses its training split, accuracy its test split.")
@output_option("--report", folder=True, default="bench-report", show_default=True,
               help="Folder for bench.json, bench.csv and accuracy_latency.png.")
@output_option("--work", folder=True,
               help="Where artifacts are built (default REPORT/artifacts); up-to-date ones are reused.")
@click.option("--max-drop", type=float, metavar="POINTS",
              help="A gate: exit 1 when a row loses more than this against FP32 (NME points up / PCKh@0.5 points "
                   "down), has non-finite predictions, failed, or was skipped for a reason other than missing "
                   "hardware.")
@click.option("--threads", default=2, show_default=True, type=int, help="CPU inference threads.")
@click.option("--batch", default=1, show_default=True, type=int, help="Images per call when timing.")
@click.option("--iters", type=int, help="Timed calls per artifact (default 50; 5 with --quick).")
@click.option("--calib-samples", default=64, show_default=True, type=int, help="INT8 calibration images.")
@click.option("--quick", is_flag=True, help="Few timing iterations and at most 8 calibration images (CI).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--label", help="Name this machine in bench.json (`cunet compare` column; default: the host name).")
@click.option("--video", type=click.Path(exists=True, file_okay=False),
              help="Faces: a 300-VW video folder (`cunet data synth --task face --video N`): every row also gets "
                   "its jitter % and NME % there, tracked as `cunet evaluate` tracks.")
@click.option("--strict", is_flag=True,
              help="Stop at the first file of --data that cannot be used (default: leave it out of every row, say so, "
                   "exit 1 at the end).")
@json_option
def bench(checkpoint, data, report, work, max_drop, threads, batch, iters, calib_samples, quick, no_progress,
          label, video, strict, as_json):
    """Build every artifact of CHECKPOINT this machine can, and compare them in one table.

    \b
    Rows: PyTorch FP32, ONNX FP32, ONNX FP16, INT8 `cpu` and `tensorrt` recipes (ONNX Runtime, CPU), OpenVINO
    FP32, the `openvino` recipe and the `tensorrt` Q/DQ file on OpenVINO (with the openvino/nncf extras), and
    TensorRT engines FP32/FP16/INT8 where TensorRT and a GPU exist (otherwise "skipped" with the reason).
    Each row: status (ok / failed validation / failed / skipped, with the reason), precision, where it ran
    (backend · device: every CPU row on the CPU, engines on the GPU), file size, NME or PCKh, Δ vs ONNX FP32,
    p50/p99 latency, images/s and memory (load: the process up to its first inference; run: the timed runs;
    GPU rows: the process's device memory), each artifact timed in its own process. A prediction that is not
    finite fails its row. A row that fails does not stop the others. Machines are noisy: compare ratios
    within one table.
    The data is checked before anything is built: a file that cannot be used is one `skipped FILE: why` line,
    every row is scored and calibrated without it, and the exit status is 1 (--strict: stop at the first).
    \b
    Examples:
      cunet bench runs/face/best.pt --data data/300w --report reports/bench
      cunet bench best.pt --data data/synth --quick --max-drop 0.5     # CI: exit 1 if INT8 loses > 0.5 NME points
      cunet bench best.pt --data data/synth --video data/videos        # + jitter % of every artifact on video
    """
    from cunet.batch import finish, print_skipped
    from cunet.pipeline.bench import BenchOptions, run_bench
    from cunet.filetype import ModelKind, require, sniff

    if sniff(checkpoint) is not ModelKind.ONNX:  # an exported FP32 model is welcome: bench then skips export
        require(checkpoint, "checkpoint", "bench")
    res = run_bench(BenchOptions(checkpoint=checkpoint, data=data, report=report, work=work, max_drop=max_drop,
                                 threads=threads, batch=batch, iters=iters, calib_samples=calib_samples,
                                 quick=quick, progress=not no_progress and not as_json, label=label, video=video,
                                 strict=strict))
    print_skipped(res.skipped)
    if as_json:
        emit_json({"task": res.task, "metric": res.metric_name, "exit_code": res.exit_code, "files": res.files,
                   "skipped": res.skipped, "scored": res.scored, "rows": res.rows})
    else:
        console().print(f"wrote {res.files['json']}, {res.files['csv']}, {res.files['plot']}", highlight=False,
                        soft_wrap=True)
    if res.exit_code:
        from cunet.pipeline.bench import gate_failures

        failing = gate_failures(res.rows)
        over = [r["artifact"] for r in failing if r["reason"] and "--max-drop" in r["reason"]]
        other = [r["artifact"] for r in failing if r["artifact"] not in over]
        what = ([f"{', '.join(over)} lost more than --max-drop {max_drop:g}"] if over else []) + \
            ([f"{', '.join(other)} not measured (failed or skipped; reasons above)"] if other else [])
        console().print(f"error: {'; '.join(what)}", highlight=False, markup=False)
    finish(res.skipped, res.scored, "test sample(s) scored in every row")
    if res.exit_code:
        raise click.exceptions.Exit(res.exit_code)
