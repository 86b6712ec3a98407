"""`cunet demo`: synthetic data → train → export → calibrate → INT8 → evaluate and profile → report."""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import emit_json, json_option, output_option, print_table
from cunet.errors import require_torch

__all__ = ["demo"]


@click.command()
@output_option("-o", "--out", folder=True, path_type=Path, default=Path("cunet-demo"), show_default=True,
               help="Demo folder: data/, run/, artifacts/ and report/ go below it.")
@click.option("--task", type=click.Choice(["face", "pose"]), default="face", show_default=True,
              help="face: synthetic 300-W-style faces (NME). pose: synthetic MPII-style people (PCKh).")
@click.option("--quick", is_flag=True, help="Tiny data, 1 epoch, few timing runs: checks the plumbing in ~1 minute.")
@click.option("--fresh", is_flag=True, help="Delete the demo's folders first and rebuild every stage.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True),
              help="Training budget in minutes (default 5); training stops after the epoch that crosses it.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="CPU threads for inference and latency measurements.")
@json_option
def demo(out, task, quick, fresh, minutes, threads, as_json):
    """Run the whole pipeline on built-in synthetic data and write a report — no GPU, no download.

    \b
      [1/5] data      synthesize a dataset in the real format   → OUT/data
      [2/5] train     train cunet-tiny                          → OUT/run/best.pt
      [3/5] bench     export ONNX, calibrate, INT8 (cpu and tensorrt recipes), TensorRT engines where a GPU
                      and TensorRT exist; accuracy, latency and memory of every artifact → OUT/artifacts
      [4/5] examples  test images with predicted vs true landmarks
      [5/5] report    OUT/report/report.md (+ report.json, ced.png, accuracy_latency.png, examples_*.png)
    \b
    The default face demo takes under 10 minutes on 2 CPU cores. Re-running reuses every finished stage (and
    says so); an interrupted run resumes training where it stopped; --fresh starts over.
    \b
    Exit code 1 when an INT8 artifact loses more accuracy than the budget stated in the report.
    \b
    Examples:
      cunet demo                         # faces, into ./cunet-demo
      cunet demo --task pose --out pose-demo
      cunet demo --quick --out /tmp/q --json
    """
    require_torch("cunet demo")
    from cunet.pipeline.demo import DemoOptions, run_demo

    opts = DemoOptions(out=out, task=task, quick=quick, fresh=fresh, minutes=minutes, threads=threads)
    result = run_demo(opts, log=lambda line: click.echo(line, err=True))
    if as_json:
        emit_json(result.to_dict())
    else:
        _summary(result, bench_reused=any(s.stage == "bench" and s.reused for s in result.stages))
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)


def _summary(result, bench_reused: bool) -> None:
    """The bench table (the bench prints it itself when it runs), the budget verdict and where the report is."""
    metric = result.report["metric"]
    if bench_reused:
        print_table(
            f"every artifact ({metric} %; Δ vs FP32) — reused from {result.out / 'artifacts'}",
            ["artifact", "status", "MB", metric, "Δ", "p50 ms", "img/s"],
            [[r.get("artifact"), r.get("status"), _num(r.get("size_mb")), _num(r.get("value")),
              _num(r.get("delta"), "{:+.3f}"), _num(r.get("p50_ms")), _num(r.get("throughput"))]
             for r in result.report["rows"]],
        )
    b = result.report["budget"]
    if b.get("max_drop") is None:
        click.echo(f"INT8 budget: not checked ({b['why']})", err=True)
    elif b.get("worst") is not None:
        verdict = "within" if b["within"] else "OVER"
        click.echo(f"INT8 budget: at most {b['max_drop']:g} {metric} points lost; worst {b['worst']} "
                   f"{b['worst_drop']:.3g} → {verdict} the budget", err=True)
    click.echo(f"report: {result.report_dir / 'report.md'}  ({result.seconds:.1f} s)", err=True)


def _num(v, fmt: str = "{:.3g}") -> str:
    return "—" if v is None else fmt.format(v)
