"""Low-bit export and packing: Q/DQ form and TensorRT rules, layer-by-layer equivalence with training's quantizers,
end-to-end parity, byte-exact .cunetq round trip, INT4 ONNX, and clear errors for damaged files.

Two exports, once per module (the dynamo exporter is the slow part): a 1-bit-weight, 8-bit-input, 8-bit-gradient
checkpoint through the real `cunet export` CLI in a subprocess, and an in-memory 4-bit weights-only model.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from cunet.cli import cli, main
from cunet.compile.export import export_onnx
from cunet.compile.lowbit import LowbitExport, check_input_qdq
from cunet.compile.verify import LOWBIT_VERIFY_FACTOR, LOWBIT_VERIFY_FLOOR, verify_onnx
from cunet.compile.packing import (
    MAGIC,
    code_bits,
    pack,
    pack_bytes,
    pack_codes,
    to_int4,
    unpack,
    unpack_bytes,
    unpack_codes,
    write_int4,
)
from cunet.compile.trt_rules import check_trt, check_trt_model
from cunet.errors import CunetError
from cunet.model import CUNet, CUNetConfig
from cunet.model.quant import QuantConfig, apply_quantization, quantize_input, quantize_weight
from cunet.runtime.meta import read_onnx_meta
from cunet.model.checkpoint import model_from_checkpoint, save_checkpoint

TINY = CUNetConfig(layers=2, order=1, channels=16, growth=8, input_size=64, num_landmarks=68)
W1 = QuantConfig(bits_w=1, bits_a=8, bits_g=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _warm(model: CUNet, seed: int) -> CUNet:
    # A few training-mode batches move BN statistics off their init, so BN is not the identity at export.
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64))
    return model.eval()


def _session(data, **opts) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    for k, v in opts.items():
        setattr(so, k, v)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def w1(tmp_path_factory):
    """(checkpoint, exported .onnx, export report): 1-bit weights, 8-bit inputs, through `cunet export`."""
    d = tmp_path_factory.mktemp("w1")
    torch.manual_seed(0)
    model = _warm(apply_quantization(CUNet(TINY), W1), seed=1)
    ckpt = d / "w1.pt"
    save_checkpoint(ckpt, model, "face", quant=W1.to_dict(), args={"sigma": 1.5})
    out = d / "w1.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "cunet", "export", str(ckpt), "-o", str(out), "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    return ckpt, out, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def w4(tmp_path_factory):
    """(model, exported .onnx): 4-bit weights only (inputs in float), exported in process."""
    torch.manual_seed(2)
    model = _warm(apply_quantization(CUNet(TINY), QuantConfig(bits_w=4)), seed=3)
    out = tmp_path_factory.mktemp("w4") / "w4.onnx"
    export_onnx(model, out, task="face")
    return model, out


# ------------------------------------------------------------------------------------------------ the export


def test_export_is_int8_qdq_that_passes_the_tensorrt_checker(w1):
    _, out, report = w1
    assert [v for v in check_trt(out) if v.severity == "error"] == []
    model = onnx.load(str(out))
    inits = {i.name: i for i in model.graph.initializer}
    dq_w = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    # Quantized convs left at inference: 31 per U-Net and the bridge (the intermediate head is dead code).
    assert len(dq_w) == 63
    for n in dq_w:
        codes = numpy_helper.to_array(inits[n.input[0]])
        assert codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
        assert np.all(numpy_helper.to_array(inits[n.input[1]]) > 0)
        assert [a.i for a in n.attribute if a.name == "axis"] == [0]
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    fp = [n.input[1] for n in convs if not n.input[1].endswith("_dequantized")]
    assert sorted(fp) == ["heads.1.conv.weight", "stem.0.weight"]  # full precision, as in the paper
    assert all(len(n.input) == 2 or n.input[1] in fp for n in convs)  # no float bias on an int8 conv
    meta = read_onnx_meta(out)
    assert meta.precision == "int8" and meta.quant == W1.to_dict() and meta.sigma == 1.5
    assert report["meta"]["quant"] == W1.to_dict() and report["verify_factor"] == LOWBIT_VERIFY_FACTOR
    assert report["verify_floor"] == LOWBIT_VERIFY_FLOOR and report["verify_error_ort"] <= report["tolerance"]


def test_onnx_runtime_quantizes_inputs_exactly_as_training_does(w1):
    """Layer by layer: the input Q/DQ of every quantized conv has the conv's calibrated step, and its output equals
    training's `quantize_input` of the very value ONNX Runtime fed the QuantizeLinear: same grid, same rounding, same
    saturation. ORT divides by the step where torch multiplies by its inverse, so a value within one float ulp of a
    rounding tie may land one step apart: allowed, and counted (expected ~1e-7 of the values)."""
    ckpt, out, _ = w1
    latent, _ = model_from_checkpoint(ckpt)
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    qconvs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1].endswith("_dequantized")]
    assert len(qconvs) == 63
    taps = {}
    for conv in qconvs:
        dq = producer[conv.input[0]]
        q = producer[dq.input[0]]
        assert (dq.op_type, q.op_type) == ("DequantizeLinear", "QuantizeLinear")
        name = conv.input[1].removesuffix(".weight_dequantized")
        step = float(latent.get_submodule(name).input_step())
        assert inits[dq.input[1]] == np.float32(step) and inits[q.input[1]] == np.float32(step)
        taps[name] = (q.input[0], dq.output[0], step)
    names = sorted({t for q_in, dq_out, _ in taps.values() for t in (q_in, dq_out)})
    model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in names)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    values = dict(zip(["heatmaps", *names], _session(model.SerializeToString()).run(None, {"image": x})))
    flips = total = 0
    for q_in, dq_out, step in taps.values():
        expect = quantize_input(torch.from_numpy(values[q_in]), 8, step).numpy()
        d = np.abs(values[dq_out] - expect)
        assert np.all((d == 0) | np.isclose(d, step, rtol=1e-5))
        flips, total = flips + int((d > 0).sum()), total + d.size
    assert flips <= 1e-5 * total, (flips, total)


def test_exported_weights_are_the_trained_low_bit_weights(w1):
    ckpt, out, _ = w1
    latent, _ = model_from_checkpoint(ckpt)
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    checked = 0
    for name, w in latent.named_parameters():
        if f"{name}_quantized" not in inits:
            continue
        codes, scale = quantize_weight(w.detach(), 1)
        exported = inits[f"{name}_quantized"].astype(np.float32) * inits[f"{name}_scale"][:, None, None, None]
        if name.endswith("dense.conv.weight"):  # 3x3 convs, nothing fused into them: bit-exact
            np.testing.assert_array_equal(exported, (codes * scale[:, None, None, None]).numpy())
            checked += 1
        else:  # a following BN was fused: same codes up to a per-channel sign, scale times the BN factor
            same = inits[f"{name}_quantized"].reshape(len(scale), -1) * codes.numpy().reshape(len(scale), -1)
            assert np.all(np.abs(same.sum(1)) == same.shape[1])
    assert checked == 18


def test_parity_with_pytorch(w1, w4):
    """Weights-only: the export is exact, so ORT passes the FP32 rule (relative L2 against float64 within 3x PyTorch
    float32's own + 1e-5: float kernels summing in another order). With 8-bit inputs, each float32 runtime rounds
    inputs that lie within float error of a step boundary differently from float64 and the flips cascade; the
    low-bit rule (3x + 0.1) bounds that, and on average ORT and PyTorch agree far more closely."""
    x = np.random.default_rng(5).standard_normal((3, 3, 64, 64)).astype(np.float32)
    model4, out4 = w4
    v4 = verify_onnx(LowbitExport(model4, read_onnx_meta(out4)).model, Path(out4).read_bytes(), x)
    assert v4.passed and v4.factor == 3.0, v4.describe()
    ckpt, out1, _ = w1
    model1, _ = model_from_checkpoint(ckpt)
    deploy = LowbitExport(model1.eval(), read_onnx_meta(out1)).model
    v1 = verify_onnx(deploy, Path(out1).read_bytes(), x, factor=LOWBIT_VERIFY_FACTOR, floor=LOWBIT_VERIFY_FLOOR)
    assert v1.passed, v1.describe()
    with torch.inference_mode():
        ref = model1(torch.from_numpy(x)).numpy()
    got = _session(str(out1)).run(None, {"image": x})[0]
    assert np.abs(got - ref).mean() <= 0.02 * np.abs(ref).mean()


def test_the_predictor_runs_low_bit_models_on_cpu_with_weight_dequantization_folded(w1):
    """`LOWBIT_CPU_CONFIG` turns ONNX Runtime's QDQ fusion off for low-bit models (it finds nothing to fuse but keeps
    every weight DequantizeLinear from being folded): the Predictor's session carries it and its heatmaps are
    bit-identical to a default session's (the setting changes which graph runs, not one float of the result)."""
    from cunet.runtime.ort_backend import LOWBIT_CPU_CONFIG
    from cunet.runtime.predictor import open_predictor

    _, out, _ = w1
    x = np.random.default_rng(6).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with open_predictor(out, backend="ort-cpu", threads=1) as pred:
        options = pred._backend._session.get_session_options()
        for key, value in LOWBIT_CPU_CONFIG.items():
            assert options.get_session_config_entry(key) == value
        got = pred.predict_heatmaps(x)
    assert np.array_equal(got, _session(str(out)).run(None, {"image": x})[0])


def test_input_qdq_check_catches_a_wrong_step(w1):
    ckpt, out, _ = w1
    model = onnx.load(str(out))
    name = "unets.0.down.0.dense.conv"
    step = float(model_from_checkpoint(ckpt)[0].get_submodule(name).input_step())
    check_input_qdq(model, {f"{name}.weight": (8, step)})
    with pytest.raises(RuntimeError, match="not Q/DQ int8 with step"):
        check_input_qdq(model, {f"{name}.weight": (8, 2 * step)})
    with pytest.raises(RuntimeError, match="clipped to 7 steps"):
        check_input_qdq(model, {f"{name}.weight": (4, step)})


# -------------------------------------------------------------------------------------------------- packing


def test_pack_codes_on_hand_made_values():
    ones = np.array([1, -1, 1, 1, -1, -1, -1, 1, 1], np.int8)
    assert pack_codes(ones, 1) == bytes([0b10110001, 0b10000000])
    assert pack_codes(np.array([-1, 0, 1, -2], np.int8), 2) == bytes([0b11000110])
    assert pack_codes(np.array([-8, 7, -1], np.int8), 4) == bytes([0x87, 0xF0])
    rng = np.random.default_rng(0)
    for bits, lo, hi in ((1, -1, 1), (2, -2, 1), (4, -8, 7)):
        codes = rng.integers(lo, hi + 1, 1001).astype(np.int8)
        if bits == 1:
            codes[codes == 0] = 1
        assert len(pack_codes(codes, bits)) == -(-1001 * bits // 8)
        np.testing.assert_array_equal(unpack_codes(pack_codes(codes, bits), bits, 1001), codes)


def test_code_bits_picks_the_fewest_lossless_bits():
    assert code_bits(np.array([1, -1, 1], np.int8)) == 1
    assert code_bits(np.array([1, 0, -1], np.int8)) == 2
    assert code_bits(np.array([7, -8, 0], np.int8)) == 4
    assert code_bits(np.array([8, 0], np.int8)) is None and code_bits(np.array([], np.int8)) is None


def test_pack_unpack_is_byte_exact_through_the_cli(w1, tmp_path):
    _, out, _ = w1
    packed, back = tmp_path / "w1.cunetq", tmp_path / "back.onnx"
    res = CliRunner().invoke(cli, ["pack", str(out), "-o", str(packed), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["tensors"] == {"1": 63} and report["packed_bytes"] == packed.stat().st_size
    res = CliRunner().invoke(cli, ["unpack", str(packed), "-o", str(back), "--json"])
    assert res.exit_code == 0, res.output
    assert back.read_bytes() == out.read_bytes()
    # 1-bit weights take 1/8 of their int8 bytes; everything else is stored as is, plus a header that names each
    # packed tensor (< 100 bytes a tensor here).
    model = onnx.load(str(out))
    weights = sum(len(i.raw_data) for i in model.graph.initializer if i.name.endswith("_quantized"))
    assert report["onnx_bytes"] - report["packed_bytes"] >= weights * 7 / 8 - 100 * 63


def test_four_bit_weights_pack_at_four_bits_and_round_trip(w4, tmp_path):
    _, out = w4
    report = pack(out, tmp_path / "w4.cunetq")
    assert report.tensors == {"4": 63}
    unpack(tmp_path / "w4.cunetq", tmp_path / "w4.onnx")
    assert (tmp_path / "w4.onnx").read_bytes() == out.read_bytes()


def test_damaged_packed_files_are_clear_errors(w1, tmp_path, capsys):
    _, out, _ = w1
    data, _ = pack_bytes(out.read_bytes())
    with pytest.raises(CunetError, match="not a cunet packed model"):
        unpack_bytes(b"PK\x03\x04" + data[4:], "x.cunetq")
    with pytest.raises(CunetError, match="truncated or padded"):
        unpack_bytes(data[:-10], "x.cunetq")
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    with pytest.raises(CunetError, match="corrupt"):
        unpack_bytes(bytes(flipped), "x.cunetq")
    with pytest.raises(CunetError, match="damaged packed model header"):
        unpack_bytes(MAGIC + b"\xff\xff\x00\x00{", "x.cunetq")
    bad = tmp_path / "bad.cunetq"
    bad.write_bytes(data[:100])
    assert main(["unpack", str(bad), "-o", str(tmp_path / "o.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.cunetq: damaged packed model header" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.onnx").exists()


def test_pack_refuses_what_it_cannot_restore_byte_for_byte(w1, tmp_path, capsys):
    _, out, _ = w1
    with pytest.raises(CunetError, match="junk.onnx: not a readable ONNX model"):
        pack_bytes(b"\xff" * 50, "junk.onnx")
    with pytest.raises(CunetError, match=r"ints.onnx: not an ONNX model \(empty graph\)"):
        pack_bytes(b"\x08\x07" * 25, "ints.onnx")  # parses (field 1 = ir_version, repeated), but holds no graph
    model = onnx.load(str(out))
    # The same message with its fields in a non-canonical order: protobuf reads it, but re-writes it differently.
    graph_first = onnx.ModelProto()
    graph_first.graph.CopyFrom(model.graph)
    rest = onnx.ModelProto()
    rest.CopyFrom(model)
    rest.ClearField("graph")
    odd = graph_first.SerializeToString() + rest.SerializeToString()
    assert onnx.load_model_from_string(odd) == model
    with pytest.raises(CunetError, match="does not re-serialise byte for byte"):
        pack_bytes(odd, "odd.onnx")
    assert main(["pack", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "m.cunetq")]) == 1
    assert "missing.onnx: no such ONNX file" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------- INT4


def test_int4_model_runs_in_onnx_runtime_and_matches_the_int8_model(w4, tmp_path):
    _, out = w4
    r = write_int4(out, tmp_path / "w4.int4.onnx")
    assert r["converted"] == 63 and r["max_abs_diff"] == 0.0
    model = onnx.load(str(tmp_path / "w4.int4.onnx"))
    int4 = [i for i in model.graph.initializer if i.data_type == TensorProto.INT4]
    assert sum(i.name.endswith("_quantized") for i in int4) == 63
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and "_quantized" in n.input[0]]
    dq_zero_points = {n.input[2] for n in dqs}
    assert dq_zero_points <= {i.name for i in int4}  # (onnxslim shares equal zero-point tensors)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 21
    codes = sum(len(i.raw_data) for i in int4 if i.name.endswith("_quantized"))
    int8 = sum(len(i.raw_data) for i in onnx.load(str(out)).graph.initializer if i.name.endswith("_quantized"))
    assert codes == pytest.approx(int8 / 2, abs=63)
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    got = _session(str(tmp_path / "w4.int4.onnx")).run(None, {"image": x})[0]
    np.testing.assert_array_equal(got, _session(str(out)).run(None, {"image": x})[0])
    # INT4 is an ONNX Runtime artifact: TensorRT's Q/DQ rules want int8, and the checker says so.
    assert {v.rule for v in check_trt_model(model) if v.severity == "error"} == {"int8"}


def test_int4_needs_weights_that_fit(w1, tmp_path):
    _, out, _ = w1
    proto, converted = to_int4(onnx.load(str(out)))
    assert converted == 63  # 1-bit codes fit 4 bits too
    plain = tmp_path / "plain.onnx"
    m = onnx.load(str(out))
    for init in m.graph.initializer:
        if init.name.endswith("_quantized"):
            init.raw_data = (np.frombuffer(init.raw_data, np.int8) * 100).astype(np.int8).tobytes()
    onnx.save(m, str(plain))
    with pytest.raises(CunetError, match="no int8 DequantizeLinear weights with codes in"):
        write_int4(plain, tmp_path / "x.onnx")
