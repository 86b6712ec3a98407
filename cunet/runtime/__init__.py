"""Runtime: one Predictor over PyTorch, ONNX Runtime (CPU/CUDA/TensorRT EP), TensorRT engines and OpenVINO.

    from cunet.runtime import open_predictor
    with open_predictor("model.onnx", backend="auto") as p:
        points = p.predict(images)          # [N, K, 2] original-image pixels

Backends are imported when a model is opened, so importing this package needs neither onnxruntime nor TensorRT.
"""

from cunet.runtime.base import BACKENDS, Backend
from cunet.runtime.meta import ModelMeta, read_engine_meta, read_ir_meta, read_onnx_meta, write_onnx_meta
from cunet.runtime.predictor import Predictor, available_backends, open_predictor, whole_image_box

__all__ = [
    "BACKENDS",
    "Backend",
    "ModelMeta",
    "Predictor",
    "available_backends",
    "open_predictor",
    "read_engine_meta",
    "read_ir_meta",
    "read_onnx_meta",
    "whole_image_box",
    "write_onnx_meta",
]
