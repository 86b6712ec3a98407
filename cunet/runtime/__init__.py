"""Runtime: one Predictor over PyTorch, ONNX Runtime (CPU/CUDA/TensorRT EP) and TensorRT engines."""
