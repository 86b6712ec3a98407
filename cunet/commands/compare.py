"""`cunet compare`: bench or profile reports from several machines in one table, with ratios to a baseline row."""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import console, emit_json, force_option, json_option, output_option

__all__ = ["compare"]


@click.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--label", "labels", multiple=True, metavar="NAME",
              help="Column name of the next report, in order (repeat it; default: the report's label or host).")
@click.option("--value", type=click.Choice(["p50_ms", "p99_ms", "throughput", "peak_mb", "load_peak_mb", "run_peak_mb"]),
              default="p50_ms", show_default=True, help="What each cell shows (memory: cunet.evaluate.memory).")
@click.option("--baseline", metavar="ROW",
              help="The row ratios are relative to, in every column (default: onnx-fp32, else the first row).")
@output_option("--csv", "csv_path", path_type=Path, help="Also write the table as CSV.")
@output_option("--plot", path_type=Path, help="Also write a PNG: one bar group per row, one bar per machine.")
@force_option
@json_option
def compare(reports, labels, value, baseline, csv_path, plot, force, as_json):
    """Put REPORTS (bench.json of `cunet bench`, or `cunet profile --json` output) side by side.

    \b
    Rows are artifacts (bench) or model · backend · batch (profile); columns are the reports, named by
    the label they were made with (`--label` of bench/profile), else their host name. Each cell is the
    value and, in brackets, its ratio to the baseline row of the same column: a ratio within one
    machine's run is robust to that machine's noise, so compare ratios across machines.
    \b
    Examples:
      cunet bench best.pt --data data --report jetson --label jetson     # on each device ...
      cunet compare jetson/bench.json server/bench.json --csv cmp.csv --plot cmp.png
      cunet profile face.onnx --json > a.json; cunet compare a.json b.json --value throughput --json
    """
    from cunet.errors import CunetError
    from cunet.evaluate.compare import VALUES, compare as run, load_report, plot_comparison, write_csv

    if len(labels) > len(reports):
        raise CunetError(f"{len(labels)} --label for {len(reports)} report(s)")
    loaded = [load_report(p, labels[i] if i < len(labels) else None) for i, p in enumerate(reports)]
    cmp = run(loaded, value=value, baseline=baseline)
    if csv_path:
        write_csv(cmp, csv_path)
    if plot:
        plot_comparison(cmp, plot)
    if as_json:
        emit_json(cmp.to_dict())
        return
    from rich.table import Table

    unit, higher = VALUES[value]
    table = Table(title=f"{value} ({unit}, {'higher' if higher else 'lower'} is better); "
                        f"(×) = ratio to {cmp.baseline}", title_justify="left")
    table.add_column("artifact", no_wrap=True)
    for c in cmp.columns:
        table.add_column(c.label, justify="right", no_wrap=True)
    for name in cmp.rows:
        cells = []
        for c in cmp.columns:
            v, r = cmp.values[name][c.label], cmp.ratios[name][c.label]
            cells.append("—" if v is None else f"{v:,.4g}" + ("" if r is None else f" ({r:.2f}×)"))
        table.add_row(name, *cells)
    out = console()
    out.print(table)
    for c in cmp.columns:
        env = c.environment
        out.print(f"{c.label}: {c.path} · {env.get('device', '?')} · {env.get('cpu', '?')}", highlight=False)
