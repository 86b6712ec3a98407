"""ONNX export: a checkpoint becomes ONE self-describing `.onnx` file with a dynamic batch.

Exporter choice: torch's dynamo exporter (`torch.onnx.export(dynamo=True)`, the default since torch 2.9) traces every
CU-Net variant (coupling orders, refinement, memory-efficient blocks) into a clean graph of Conv / BatchNormalization /
Relu / Concat / MaxPool / Resize, half the nodes of the deprecated TorchScript exporter's graph before simplification.
It is slower (seconds instead of one) but it is the exporter torch maintains, so we use it and nothing else.
The weights are serialised into the one file ourselves, so no `.onnx.data` sidecar is ever written.

Steps: export (input "image" [N,3,S,S] float32 → output "heatmaps" [N,K,S/4,S/4], N dynamic) → onnxslim → the
"cunet" metadata (`cunet.runtime.meta`) → verification (`cunet.compile.verify`: ONNX Runtime must be about as close
to a float64 PyTorch reference as PyTorch float32 is, on realistic crops) → one atomic write. A model that fails
verification is not written.
"""

from __future__ import annotations

import ast

import contextlib
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cunet.compile.verify import (
    INPUT_NAME,
    OUTPUT_NAME,
    NO_VERIFY_HINT,
    VERIFY_FACTOR,
    VERIFY_FLOOR,
    Verification,
    verification_inputs,
    verify_onnx,
)
from cunet.errors import CunetError
from cunet.io import sha256_file, write_bytes
from cunet.runtime.meta import ModelMeta, read_onnx_meta, write_onnx_meta

__all__ = [
    "ExportReport",
    "export_onnx",
    "refusal_message",
    "read_onnx_meta",
    "write_onnx_meta",
    "ModelMeta",
    "INPUT_NAME",
    "OUTPUT_NAME",
]

MIN_OPSET = 17  # the oldest opset the quantizer and TensorRT 10/11 paths are meant for


@dataclass(frozen=True)
class ExportReport:
    """What `export_onnx` produced.

    Attributes:
        path: the written `.onnx` file.
        opset: the default-domain opset of the model.
        exporter: the torch exporter used ("dynamo").
        simplified: whether onnxslim ran.
        nodes_exported: graph nodes straight out of the exporter.
        nodes: graph nodes in the written model.
        max_abs_error: max |ORT - PyTorch float32| over the verification batch (None if not verified); shown for
            reference, it is not the criterion.
        tolerance: the bound the check applied to `error_ort`: factor x `error_torch32` + floor (None likewise).
        file_bytes: size of the written file.
        seconds: wall time of the whole export.
        meta: the metadata stored in the model.
        verification: the full `Verification` (both errors, worst output, rule, inputs), or None.
    """

    path: Path
    opset: int
    exporter: str
    simplified: bool
    nodes_exported: int
    nodes: int
    max_abs_error: float | None
    tolerance: float | None
    file_bytes: int
    seconds: float
    meta: ModelMeta
    verification: Verification | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the metadata without its bulky name list)."""
        meta = self.meta.to_dict()
        meta.pop("landmark_names")
        meta.pop("flip_pairs")
        return {
            "path": str(self.path),
            "opset": self.opset,
            "exporter": self.exporter,
            "simplified": self.simplified,
            "nodes_exported": self.nodes_exported,
            "nodes": self.nodes,
            "max_abs_error": self.max_abs_error,
            "tolerance": self.tolerance,
            "file_bytes": self.file_bytes,
            "seconds": self.seconds,
            "meta": meta,
            **_verification_keys(self.verification),
        }


def _verification_keys(v: Verification | None) -> dict[str, Any]:
    """The --json keys of the check: relative L2 errors against float64 PyTorch and the rule that judged them."""
    keys = ("error_ort", "error_torch32", "worst_output", "factor", "floor", "inputs", "samples")
    names = ("verify_error_ort", "verify_error_torch32", "verify_worst_output", "verify_factor", "verify_floor",
             "verify_inputs", "verify_samples")
    return {n: None if v is None else getattr(v, k) for n, k in zip(names, keys)}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The dynamo exporter logs optional-op registration notes and prints conversion notes on stdout; `--json` owns
    # stdout, so both go to stderr and routine warnings are dropped. Real failures still raise.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _load(checkpoint_or_model: Any, task: str | None) -> tuple[Any, ModelMeta]:
    from cunet.model import CUNet
    from cunet.model.checkpoint import model_from_checkpoint

    if isinstance(checkpoint_or_model, CUNet):
        if task is None:
            raise ValueError("export_onnx needs task= when given a model instead of a checkpoint")
        ckpt = {"task": task, "config": checkpoint_or_model.cfg.to_dict()}
        return checkpoint_or_model, ModelMeta.from_checkpoint(ckpt)
    path = Path(checkpoint_or_model)
    model, ckpt = model_from_checkpoint(path)
    return model, ModelMeta.from_checkpoint(ckpt, source_sha256=sha256_file(path))


def _export(model: Any, size: int, opset: int) -> Any:
    import torch

    batch = torch.export.Dim("batch", min=1)
    example = torch.randn(2, model.cfg.in_chans, size, size)
    with _quiet_exporter():
        program = torch.onnx.export(
            model,
            (example,),
            None,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"images": {0: batch}},
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    _name_by_module(proto)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return proto


def _name_by_module(proto: Any) -> None:
    """Name each node after the module it came from (`unets.0.down.1.dense/Conv_12`).

    The dynamo exporter names nodes `node_Conv_471` and keeps the module path only in node metadata, which onnxslim
    drops; accuracy control (`cunet.compile.quantize.node_groups`) and profiler output need the block in the name.
    """
    for i, node in enumerate(proto.graph.node):
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        try:
            path = [s for s in ast.literal_eval(scopes)[:-1] if s] if scopes else []
        except (ValueError, SyntaxError):
            path = []
        node.name = f"{path[-1] if path else 'model'}/{node.op_type}_{i}"


def refusal_message(out_path: str | os.PathLike, check: Verification) -> str:
    """The one-line error of a failed verification: both errors, the worst output, how (and at what risk) to skip."""
    return (
        f"{out_path}: not written: the ONNX graph does not compute what PyTorch does: {check.describe()}; "
        f"{NO_VERIFY_HINT}"
    )


def export_onnx(
    checkpoint_or_model: str | os.PathLike | Any,
    out_path: str | os.PathLike,
    opset: int = 18,
    simplify: bool = True,
    verify: bool = True,
    task: str | None = None,
    decode: bool = False,
    verify_images: str | os.PathLike | None = None,
) -> ExportReport:
    """Export a checkpoint (or an in-memory `CUNet`) to one FP32 ONNX file with a dynamic batch and metadata.

    Args:
        checkpoint_or_model: a `.pt` checkpoint path, or a `CUNet` (then `task` is required).
        out_path: the `.onnx` file to write (atomically; parent folders are created).
        opset: default-domain opset, at least 17.
        simplify: run onnxslim (constant folding, dead-node removal).
        verify: run ONNX Runtime, PyTorch float32 and PyTorch float64 on the same realistic inputs
            (`cunet.compile.verify`); when ORT's relative error against float64 exceeds `VERIFY_FACTOR` x PyTorch
            float32's own + `VERIFY_FLOOR` (the low-bit constants for a model with quantized inputs), it is an
            error and nothing is written.
        task: "face" or "pose", only when a model is given.
        decode: end the graph in the quarter-pixel decoder (`cunet.compile.decode_graph`): the model outputs
            "landmarks" [N, K, 3] instead of heatmaps. Verification checks the heatmaps, before the tail.
        verify_images: a dataset root or image folder whose images (cropped and normalised as calibration does)
            replace the synthetic crops of the check.

    Returns:
        An `ExportReport` with the check's errors (`verification`).

    Raises:
        CunetError: unreadable checkpoint, opset below 17, or failed verification.
    """
    import onnx

    start = time.perf_counter()
    if opset < MIN_OPSET:
        raise CunetError(f"opset {opset} is too old; cunet exports opset {MIN_OPSET} or newer")
    model, meta = _load(checkpoint_or_model, task)
    lowbit = None
    if getattr(model, "quant_config", None) is not None:  # low-bit QAT model: export its Q/DQ deploy form
        from cunet.compile.lowbit import LowbitExport

        lowbit = LowbitExport(model, meta)
        model, meta = lowbit.model, lowbit.meta
    was_training = model.training
    model.eval()
    try:
        proto = _export(model, meta.input_size, opset)
        nodes_exported = len(proto.graph.node)
        if lowbit is not None:  # before onnxslim: a conv reading int8 weights through a DQ keeps its BN apart
            proto = lowbit.rewrite(proto)
        if simplify:
            import onnxslim

            with _quiet_exporter():
                proto = onnxslim.slim(proto)
        write_onnx_meta(proto, meta)
        proto.producer_name = "cunet"
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
        check = None
        if verify:
            x, what = verification_inputs(meta, model.cfg.in_chans, verify_images)
            factor, floor = (VERIFY_FACTOR, VERIFY_FLOOR) if lowbit is None else lowbit.verify_rule
            check = verify_onnx(model, data, x, what, factor, floor)
        if decode:
            from cunet.compile.decode_graph import append_decode

            proto, meta = append_decode(proto, meta, OUTPUT_NAME)
            data = proto.SerializeToString()
    finally:
        model.train(was_training)
    if check is not None and not check.passed:
        raise CunetError(refusal_message(out_path, check))
    write_bytes(out_path, data)
    real_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return ExportReport(
        path=Path(out_path),
        opset=real_opset,
        exporter="dynamo",
        simplified=simplify,
        nodes_exported=nodes_exported,
        nodes=len(proto.graph.node),
        max_abs_error=None if check is None else check.max_abs_error,
        tolerance=None if check is None else check.allowed,
        file_bytes=len(data),
        seconds=time.perf_counter() - start,
        meta=meta,
        verification=check,
    )
