"""`cunet export --decode`: the quarter-pixel decoder inside the ONNX graph, and every runtime path that uses it.

Accuracy against the Python decoder, on the heatmaps of a briefly trained cunet-tiny (64² input, 16² heatmaps) over
synthetic test faces: the tail is the "quarter" method, so against `decode(..., "quarter")` of the same heatmaps it
must agree to float32 rounding. Tolerance 1e-3 crop px: the tail computes (argmax + 0.25·sign) · 4 + 1.5 in float32,
exact for these magnitudes, and the heatmaps come from the same graph on the same runtime; a wrong neighbour, a
missing mask or a swapped axis would be off by 1 px (0.25 heatmap px · stride) or more. Against DARK (the Python
default) both start from the same argmax and differ by their offsets, ≤ 0.25 (quarter) + 1 (DARK's step is
bounded by a pixel per axis) = 1.25 heatmap px = 5 crop px per axis; on this barely trained model the measured
maximum was 5.05 crop px as a distance (mean 1.03), NME 50.41 % (quarter) vs 50.18 % (DARK).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cunet.compile.decode_graph import DECODED_OUTPUT, append_decode
from cunet.data.decode import decode
from cunet.data.heatmaps import heatmap_to_input
from cunet.errors import CunetError
from cunet.runtime import open_predictor
from cunet.runtime.meta import ModelMeta, read_onnx_meta

STRIDE = 4


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """A 3-epoch cunet-tiny face model: its checkpoint, the plain export, the --decode export (CLI) and test images."""
    from cunet.compile.export import export_onnx
    from cunet.data.dataset import load_samples, read_image
    from cunet.data.synth import synthesize
    from cunet.train.trainer import TrainOptions, train

    root = tmp_path_factory.mktemp("decode_graph")
    synthesize(root / "faces", "face", n=24, seed=3, image_size=96)
    opts = TrainOptions(task="face", data=root / "faces", out=root / "run", variant="cunet-tiny", epochs=3,
                        batch_size=4, lr=2e-3, optimizer="adam", seed=0, overrides={"input_size": 64},
                        progress=False, threads=1)
    train(opts)
    ckpt = root / "run" / "last.pt"
    plain = root / "plain.onnx"
    export_onnx(ckpt, plain)
    decoded = root / "decoded.onnx"
    proc = subprocess.run([sys.executable, "-m", "cunet", "export", str(ckpt), "-o", str(decoded), "--decode",
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    samples = load_samples(root / "faces", "face", "test").samples
    images = [read_image(s.image) for s in samples]
    return {"ckpt": ckpt, "plain": plain, "decoded": decoded, "report": json.loads(proc.stdout),
            "images": images, "boxes": [s.box for s in samples], "root": root}


def test_the_decoded_model_outputs_landmarks_and_says_so(models: dict) -> None:
    proto = onnx.load(str(models["decoded"]))
    (out,) = proto.graph.output
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert out.name == DECODED_OUTPUT and dims == ["N", 68, 3]
    meta = read_onnx_meta(models["decoded"])
    assert meta.decode == "quarter" and read_onnx_meta(models["plain"]).decode is None
    assert models["report"]["meta"]["decode"] == "quarter" and models["report"]["max_abs_error"] is not None
    assert "decode" not in json.loads(next(p.value for p in onnx.load(str(models["plain"])).metadata_props))
    used = {n.op_type for n in proto.graph.node if n.name.startswith("decode/")}
    assert used <= {"Reshape", "ArgMax", "GatherElements", "ReduceSum", "Cast", "Div", "Floor", "Mul", "Add", "Sub",
                    "Clip", "Sign", "Concat"}


def test_in_graph_decoding_matches_the_python_decoder_on_real_heatmaps(models: dict) -> None:
    with open_predictor(models["plain"], backend="ort-cpu", decode_method="quarter") as p:
        x, affines = p.preprocess(models["images"], models["boxes"])
        heatmaps = p.predict_heatmaps(x)
        plain_points = p.predict(models["images"], models["boxes"])
    with open_predictor(models["decoded"], backend="ort-cpu") as p:
        assert p.decode_method == "quarter"
        landmarks = p.predict_heatmaps(x)
        decoded_points = p.predict(models["images"], models["boxes"])
    assert landmarks.shape == (len(x), 68, 3)
    coords, scores = decode(heatmaps, "quarter")
    np.testing.assert_allclose(landmarks[..., :2], heatmap_to_input(coords, STRIDE), atol=1e-3, rtol=0)
    np.testing.assert_allclose(landmarks[..., 2], scores, atol=1e-6, rtol=0)
    np.testing.assert_allclose(decoded_points, plain_points, atol=1e-3 * 96 / 64, rtol=0)  # crop px → image px
    dark, _ = decode(heatmaps, "dark")
    gap = np.abs(landmarks[..., :2] - heatmap_to_input(dark, STRIDE)).max()
    assert 0 < gap <= 1.25 * STRIDE + 1e-3, gap  # quarter is not DARK, and never further than their offsets


def test_flip_on_a_decoded_model_averages_the_mirrored_points(models: dict) -> None:
    images, boxes = models["images"][:3], models["boxes"][:3]
    with open_predictor(models["decoded"], backend="ort-cpu") as p:
        x, affines = p.preprocess(images, boxes)
        direct = p.predict_heatmaps(x)
        mirrored = p.predict_heatmaps(np.ascontiguousarray(x[..., ::-1]))[:, p.meta.flip_permutation]
        mirrored[..., 0] = p.meta.input_size - 1 - mirrored[..., 0]
        want = p.postprocess(0.5 * (direct + mirrored), affines)
        np.testing.assert_allclose(p.predict(images, boxes, flip=True), want, atol=1e-9)


def _tail_only(k: int, h: int) -> tuple[onnx.ModelProto, ModelMeta]:
    from cunet.model import CUNetConfig

    graph = helper.make_graph(
        [helper.make_node("Identity", ["maps"], ["heatmaps"])], "tail",
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["N", k, h, h])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", k, h, h])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    cfg = CUNetConfig(layers=2, order=1, channels=16, growth=8, input_size=h * STRIDE, num_landmarks=k)
    meta = ModelMeta(task="pose", num_landmarks=k, landmark_names=tuple(f"p{i}" for i in range(k)), flip_pairs=(),
                     input_size=h * STRIDE, heatmap_stride=STRIDE, mean=(0.5,) * 3, std=(0.5,) * 3,
                     config=cfg.to_dict())
    return append_decode(proto, meta)


def test_the_tail_on_edge_cases_borders_ties_flat_and_non_finite_maps() -> None:
    import onnxruntime as ort

    k, h = 9, 16
    proto, meta = _tail_only(k, h)
    hm = np.random.default_rng(0).random((2, k, h, h)).astype(np.float32)
    hm[0, 0] = 0.0
    hm[0, 0, 0, 5], hm[0, 0, 0, 6] = 1.0, 0.5  # top border: x shifts, y does not
    hm[0, 1] = 0.0
    hm[0, 1, 15, 15] = 1.0  # corner
    hm[0, 2] = 0.25  # flat: first pixel, no shift
    hm[0, 3, 4, 4] = hm[0, 3, 7, 2] = 2.0  # tie: the first in row-major order
    hm[0, 4, 3, 3] = np.nan
    hm[0, 5, 1, 1] = np.inf
    hm[0, 6, 2, 2] = -np.inf
    hm[0, 7] = 0.0
    hm[0, 7, 6, 0], hm[0, 7, 5, 0], hm[0, 7, 6, 1] = 1.0, 0.9, 0.3  # left border with a larger upper neighbour
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"maps": hm})
    coords, scores = decode(hm, "quarter")
    np.testing.assert_array_equal(out[..., :2], heatmap_to_input(coords, STRIDE).astype(np.float32))
    np.testing.assert_array_equal(out[..., 2], scores.astype(np.float32))
    assert np.isnan(out[0, 4:7]).all() and np.isfinite(np.delete(out, [4, 5, 6], axis=1)).all()
    assert meta.decode == "quarter"
    with pytest.raises(CunetError, match="already decodes"):
        append_decode(_tail_only(k, h)[0], meta)


def test_openvino_runs_the_tail_like_onnx_runtime() -> None:
    ov = pytest.importorskip("openvino")
    k, h = 7, 16
    proto, _ = _tail_only(k, h)
    hm = np.random.default_rng(1).random((3, k, h, h)).astype(np.float32)
    compiled = ov.Core().compile_model(ov.Core().read_model(proto.SerializeToString(), b""), "CPU")
    out = compiled(hm)[0]
    coords, scores = decode(hm, "quarter")
    np.testing.assert_array_equal(out[..., :2], heatmap_to_input(coords, STRIDE).astype(np.float32))
    np.testing.assert_array_equal(out[..., 2], scores.astype(np.float32))


def test_quantize_refuses_and_check_trt_accepts_a_decoded_model(models: dict) -> None:
    from cunet.compile.quantize import quantize
    from cunet.compile.trt_rules import check_trt

    out = models["root"] / "decoded.int8.onnx"
    with pytest.raises(CunetError, match="decodes in its graph.*without --decode"):
        quantize(models["decoded"], out, "cpu", models["root"] / "faces")
    assert not out.exists()
    assert [v for v in check_trt(models["decoded"]) if v.severity == "error"] == []


def test_profile_times_a_decoded_model(models: dict) -> None:
    from cunet.evaluate.profile import profile

    report = profile(models["decoded"], backend="ort-cpu", warmup=1, iters=3, threads=1)
    assert report["results"][0]["latency_ms"]["decode"]["p50"] > 0


def test_metadata_rejects_an_unknown_decode_method(models: dict) -> None:
    d = read_onnx_meta(models["decoded"]).to_dict()
    with pytest.raises(CunetError, match="decode must be quarter"):
        ModelMeta.from_dict({**d, "decode": "dark"})
    assert ModelMeta.from_dict(d).decode == "quarter"


def test_export_help_explains_decode() -> None:
    proc = subprocess.run([sys.executable, "-m", "cunet", "export", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "--decode" in proc.stdout and "landmarks" in proc.stdout
