"""Compilation: ONNX export, INT8 quantization recipes and TensorRT engines."""
