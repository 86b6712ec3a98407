"""Small ONNX graph edits shared by the graph rewrites of `quantize` (BN → depthwise) and `lowbit` (weight Q/DQ)."""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["set_nodes"]


def set_nodes(graph: Any, nodes: Iterable[Any]) -> None:
    """Replace `graph`'s nodes with `nodes` (in topological order) and drop the initializers nothing reads any more."""
    nodes = list(nodes)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {t for n in graph.node for t in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
