"""Plots a person can read: on the demo's own bench report (close points: three FP32 rows within 1 ms, two INT8 rows
at the same spot) and on a denser one, no label box overlaps another label or a marker, every label stays inside the
axes, and the row names of `cunet compare`'s bars never overlap. Extents come from matplotlib's renderer."""

from __future__ import annotations

import itertools

import pytest
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from cunet.evaluate.compare import Report, compare, comparison_figure
from cunet.pipeline.bench_output import OK, ROW_KEYS, SKIPPED, accuracy_latency_figure

#: The rows of the README's `make demo` transcript: artifact, NME %, p50 ms (None: skipped, no TensorRT).
DEMO = [("pytorch-fp32", 2.18, 27.6), ("onnx-fp32", 2.18, 2.99), ("onnx-fp16", 2.18, 3.92),
        ("onnx-int8-cpu", 2.19, 2.02), ("onnx-int8-tensorrt", 2.21, 4.44), ("openvino-fp32", 2.18, 3.28),
        ("openvino-int8", 2.19, 2.01), ("openvino-int8-tensorrt", 2.2, 2.28), ("tensorrt-fp32", None, None),
        ("tensorrt-fp16", None, None), ("tensorrt-int8", None, None)]
#: Eight artifacts within 0.4 ms and 0.01 NME points of each other, plus one far away.
DENSE = [(f"onnx-int8-variant-{i}", 2.18 + 0.00125 * i, 2.0 + 0.05 * i) for i in range(8)] + [("pytorch-fp32", 2.2, 30.0)]


def _rows(table):
    rows = []
    for name, nme, p50 in table:
        row = dict.fromkeys(ROW_KEYS)
        row.update(artifact=name, status=OK if nme is not None else SKIPPED, value=nme, p50_ms=p50,
                   precision=name.split("-")[1], metric="nme")
        rows.append(row)
    return rows


def _label_boxes(fig):
    """(label text, its text box) of every annotation: the text only, not its leader line."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    return ax, {t.get_text(): Text.get_window_extent(t, renderer) for t in ax.texts}


def _overlap(a: Bbox, b: Bbox) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


@pytest.mark.parametrize("table", [DEMO, DENSE], ids=["demo", "dense"])
def test_accuracy_latency_labels_overlap_nothing(table):
    fig = accuracy_latency_figure(_rows(table), "nme", batch=1, threads=2)
    ax, boxes = _label_boxes(fig)
    shown = [(n, v, p) for n, v, p in table if v is not None]
    assert sorted(boxes) == sorted(n for n, _, _ in shown)  # every measured row is labelled, skipped ones are not
    clashes = [(a, b) for a, b in itertools.combinations(boxes, 2) if _overlap(boxes[a], boxes[b])]
    assert not clashes, clashes
    px = fig.dpi / 72
    markers = {n: Bbox.from_bounds(*(ax.transData.transform((p, v)) - 3 * px), 6 * px, 6 * px) for n, v, p in shown}
    on_markers = [(label, n) for label, box in boxes.items() for n, m in markers.items() if _overlap(box, m)]
    assert not on_markers, on_markers
    legend = ax.get_legend().get_window_extent()
    assert not [label for label, box in boxes.items() if _overlap(box, legend)]
    frame = ax.get_window_extent()
    outside = [label for label, box in boxes.items() if not frame.contains(box.x0, box.y0) or
               not frame.contains(box.x1, box.y1)]
    assert not outside, outside


def test_accuracy_latency_axis_is_logarithmic_over_a_wide_range():
    assert accuracy_latency_figure(_rows(DEMO), "nme", 1, 2).axes[0].get_xscale() == "log"  # 2.01 .. 27.6 ms
    close = [r for r in DEMO if r[2] is not None and r[2] < 5]
    assert accuracy_latency_figure(_rows(close), "nme", 1, 2).axes[0].get_xscale() == "linear"


def test_compare_row_names_never_overlap():
    names = [f"face-8.int8-{r}.onnx · ort-cpu · batch {b}" for r in ("cpu", "tensorrt", "openvino") for b in (1, 8)]
    names += [n for n, _, _ in DEMO]
    reports = [Report(f"{m}.json", m, "bench", m, {n: {"p50_ms": 2.0 + i * (1 + k)} for i, n in enumerate(names)}, {})
               for k, m in enumerate(("idle 2-core AVX-512 box", "jetson-orin-nano"))]
    fig = comparison_figure(compare(reports))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    ticks = [t.get_window_extent(renderer) for t in ax.get_yticklabels() if t.get_text()]
    assert len(ticks) == len(names)
    assert not [i for i, (a, b) in enumerate(itertools.pairwise(ticks)) if _overlap(a, b)]
    assert not _overlap(ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer))
    assert ax.get_xscale() == "log"  # 2 ms .. 60 ms
