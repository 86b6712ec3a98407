"""The Predictor over torch and ONNX Runtime: same landmarks, boxes, flip test, and clear errors for GPU backends
on a machine without a GPU. One tiny checkpoint is exported once for the module (the slow part)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cunet.compile.export import export_onnx
from cunet.data.preprocess import Box
from cunet.errors import CunetError
from cunet.model import CUNet, CUNetConfig
from cunet.runtime import available_backends, open_predictor, whole_image_box
from cunet.runtime.base import cuda_device_available
from cunet.runtime.ort_backend import ort_available_providers
from cunet.model.checkpoint import save_checkpoint

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
TINY = CUNetConfig(layers=2, order=1, channels=16, growth=8, input_size=64, num_landmarks=68)
# torch and ORT heatmaps differ by ~1e-5 (FP32 rounding); decoding moves a point by at most a few 1e-4 heatmap px
# for that, times stride 4 and the crop scale (< 10 for these images): 0.02 px in the original image is generous
# for rounding and far below a real disagreement (one heatmap pixel = 4+ image pixels).
BACKEND_ATOL_PX = 0.02


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("predictor")
    torch.manual_seed(0)
    model = CUNet(TINY)
    # The fresh heads are initialised near zero (flat heatmaps, argmax ties); give them unit-scale weights so every
    # heatmap has a clear, image-dependent peak and backends can be compared point by point.
    for head in model.heads.values():
        torch.nn.init.normal_(head.conv.weight, std=1.0)
    ckpt = d / "tiny.pt"
    save_checkpoint(ckpt, model, task="face")
    onnx_path = d / "tiny.onnx"
    export_onnx(ckpt, onnx_path)
    return ckpt, onnx_path


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    out = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), rng.integers(0, 256, (130, 70, 3), dtype=np.uint8)]
    pngs = sorted((FIXTURES / "300w").glob("*.png"))
    out += [cv2.imread(str(p)) for p in pngs]
    return out


def test_torch_and_ort_cpu_give_the_same_landmarks(models, images):
    ckpt, onnx_path = models
    with open_predictor(ckpt, backend="torch", device="cpu") as pt, open_predictor(onnx_path, backend="ort-cpu") as po:
        assert pt.provider == "torch-cpu" and po.provider == "CPUExecutionProvider"
        assert pt.meta.landmark_names == po.meta.landmark_names
        for flip in (False, True):
            a, b = pt.predict(images, flip=flip), po.predict(images, flip=flip)
            assert a.shape == b.shape == (len(images), 68, 2)
            np.testing.assert_allclose(a, b, atol=BACKEND_ATOL_PX, rtol=0)


def test_points_land_inside_the_crop(models, images):
    _, onnx_path = models
    with open_predictor(onnx_path) as p:
        pts = p.predict(images)
    for img, q in zip(images, pts):
        box = whole_image_box(img)
        assert np.all(np.abs(q - [box.cx, box.cy]) <= box.size / 2 + 1)


def test_boxes_none_is_the_whole_image_box(models, images):
    _, onnx_path = models
    with open_predictor(onnx_path, backend="ort-cpu") as p:
        auto = p.predict(images)
        explicit = p.predict(images, boxes=[whole_image_box(im) for im in images])
        np.testing.assert_array_equal(auto, explicit)
        assert whole_image_box(images[0]) == Box(59.5, 44.5, 120.0)


def test_explicit_box_maps_back_to_original_pixels(models, images):
    # The image pasted at (dx, dy) into a larger black canvas, cropped with the shifted box, is the same crop:
    # the landmarks must come back shifted by exactly (dx, dy).
    _, onnx_path = models
    img = images[0]
    dx, dy = 37, 21
    canvas = np.zeros((img.shape[0] + 80, img.shape[1] + 90, 3), np.uint8)
    canvas[dy : dy + img.shape[0], dx : dx + img.shape[1]] = img
    box = whole_image_box(img)
    with open_predictor(onnx_path) as p:
        ref = p.predict([img])
        shifted = p.predict([canvas], boxes=[Box(box.cx + dx, box.cy + dy, box.size)])
    np.testing.assert_allclose(shifted, ref + [dx, dy], atol=1e-6)


def test_flip_test_is_mirror_equivariant(models, images):
    # Flip test of the mirrored image = mirrored flip test of the image, with left/right landmarks swapped.
    ckpt, _ = models
    img = images[0]
    with open_predictor(ckpt, device="cpu") as p:
        a = p.predict([img], flip=True)[0]
        b = p.predict([np.ascontiguousarray(img[:, ::-1])], flip=True)[0]
        perm = p.meta.flip_permutation
    mirrored = a[perm].copy()
    mirrored[:, 0] = img.shape[1] - 1 - mirrored[:, 0]
    np.testing.assert_allclose(b, mirrored, atol=1e-3)


def test_predict_heatmaps_and_batch_sizes(models):
    _, onnx_path = models
    p = open_predictor(onnx_path)
    x = np.random.default_rng(2).standard_normal((3, 3, 64, 64)).astype(np.float32)
    with pytest.raises(RuntimeError, match="closed"):
        p.predict_heatmaps(x)
    with p:
        assert p.predict_heatmaps(x).shape == (3, 68, 16, 16)
        assert p.predict([]).shape == (0, 68, 2)
        with pytest.raises(CunetError, match="\\[N, 3, 64, 64\\]"):
            p.predict_heatmaps(x[:, :, :32])
        with pytest.raises(CunetError, match="image 0"):
            p.predict([np.zeros((10, 10), np.uint8)])


@pytest.mark.skipif(cuda_device_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("backend", ["ort-cuda", "ort-trt"])
def test_gpu_ort_backends_are_one_clear_error_without_gpu(models, backend):
    _, onnx_path = models
    with pytest.raises(CunetError) as err:
        with open_predictor(onnx_path, backend=backend) as p:
            p.predict_heatmaps(np.zeros((1, 3, 64, 64), np.float32))
    message = str(err.value)
    assert "\n" not in message and str(onnx_path) in message and backend in message


@pytest.mark.skipif(cuda_device_available(), reason="this machine has a CUDA device")
def test_tensorrt_without_gpu_is_one_clear_error(models, tmp_path):
    _, onnx_path = models
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")  # never reaches TensorRT: the device check comes first
    with pytest.raises(CunetError, match="needs a CUDA device"):
        open_predictor(engine)
    with pytest.raises(CunetError, match="runs .engine files"):
        open_predictor(onnx_path, backend="tensorrt")
    assert "tensorrt" not in available_backends() and "ort-cuda" not in available_backends()


def test_backend_and_file_type_mismatches(models, tmp_path):
    ckpt, onnx_path = models
    with pytest.raises(CunetError, match="torch backend"):
        open_predictor(ckpt, backend="ort-cpu")
    with pytest.raises(CunetError, match="runs .pt checkpoints"):
        open_predictor(onnx_path, backend="torch")
    with pytest.raises(CunetError, match="unknown backend"):
        open_predictor(onnx_path, backend="onnx-mlir")
    with pytest.raises(CunetError, match="no such model file"):
        open_predictor(tmp_path / "missing.onnx")
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(CunetError, match="unknown model type"):
        open_predictor(tmp_path / "m.tflite")
    assert set(available_backends(onnx_path)) >= {"ort-cpu"} and available_backends(ckpt) == ["torch"]


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_device_available(), reason="needs a CUDA device")
def test_ort_cuda_matches_cpu(models, images):
    if "CUDAExecutionProvider" not in ort_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    _, onnx_path = models
    with open_predictor(onnx_path, backend="ort-cpu") as cpu, open_predictor(onnx_path, backend="ort-cuda") as gpu:
        assert gpu.provider == "CUDAExecutionProvider"
        np.testing.assert_allclose(gpu.predict(images), cpu.predict(images), atol=BACKEND_ATOL_PX, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_device_available(), reason="needs a CUDA device")
def test_torch_cuda_matches_cpu(models, images):
    ckpt, _ = models
    with open_predictor(ckpt, device="cpu") as cpu, open_predictor(ckpt, device="cuda") as gpu:
        assert gpu.provider.startswith("torch-cuda")
        np.testing.assert_allclose(gpu.predict(images), cpu.predict(images), atol=BACKEND_ATOL_PX, rtol=0)
        assert gpu.device_ms is not None
