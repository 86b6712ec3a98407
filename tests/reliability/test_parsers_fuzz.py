"""Property-based tests of every parser of user files: whatever the bytes, the only exception is a `CunetError`.

Guards the parsers' contract (cunet/data/formats.py, cunet/runtime/meta.py): a half-written `.pts`, a hand-edited
MPII/COCO JSON, a box file or model metadata from another tool must become one line naming the file, never a
`TypeError`/`OverflowError`/`KeyError` traceback. Three kinds of input per parser:

- random bytes (and random text) — what a wrong file or a disk error gives;
- byte-level mutations of a valid file (truncate, delete, insert, overwrite, swap in a nasty token) — half-written
  and hand-edited files;
- for JSON formats, structural mutations of a valid document (any value replaced by any JSON value, NaN/Infinity
  and 2**70 included; keys deleted or added) — files written by other tools or versions.

A parse that succeeds must also return what the docstring promises (finite coordinates, NaN exactly where a point
is missing, boxes with x2 > x1), so "no exception" cannot be satisfied by returning garbage.
Examples per test are kept modest (the suite has a time budget); `tally` counts them for the closing note.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cunet.data import formats
from cunet.errors import CunetError
from cunet.runtime import meta as meta_mod

SETTINGS = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
#: Tokens that break naive number and header parsing.
NASTY = ["nan", "NaN", "inf", "-inf", "1e999", "-1e999", "", "{", "}", "n_points:", "0x10", "1,5", "--1", "1e", "\x00",
         "\ufeff", "\r", "9" * 400, "null", "true", "[]", "{}", '"', "\\", "\u0661\u0662"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _mutate_bytes(data: st.DataObject, blob: bytes) -> bytes:
    """Up to 4 edits of a valid file: truncate, delete, insert random bytes, overwrite, or splice in a nasty token."""
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        pos = data.draw(st.integers(0, max(len(blob), 1)), label="pos") % (len(blob) + 1)
        kind = data.draw(st.sampled_from(["truncate", "delete", "insert", "overwrite", "token"]), label="kind")
        if kind == "truncate":
            blob = blob[:pos]
        elif kind == "delete":
            blob = blob[:pos] + blob[pos + data.draw(st.integers(1, 16)) :]
        elif kind == "insert":
            blob = blob[:pos] + data.draw(st.binary(min_size=1, max_size=8)) + blob[pos:]
        elif kind == "overwrite":
            chunk = data.draw(st.binary(min_size=1, max_size=4))
            blob = blob[:pos] + chunk + blob[pos + len(chunk) :]
        else:
            # Replace the token (run of non-space characters) around pos: "12.5" becomes "nan", "}" becomes "".
            text = blob.decode("utf-8", "replace")
            spans = [m.span() for m in re.finditer(r"[^\s,:\[\]{}]+|[{}\[\]]", text)]
            if spans:
                a, b = spans[pos % len(spans)]
                text = text[:a] + data.draw(st.sampled_from(NASTY)) + text[b:]
            blob = text.encode("utf-8", "surrogatepass")
    return blob


def _mutate_json(data: st.DataObject, doc):
    """Up to 3 structural edits: replace any value by any JSON value, delete a key/item, or add one."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        parent, key, node = None, None, doc
        # Descend with probability 3/4 per level, so joints/keypoints deep in the document get hit too.
        while isinstance(node, (list, dict)) and node and data.draw(st.integers(0, 3), label="descend"):
            keys = list(range(len(node))) if isinstance(node, list) else sorted(node)
            key = data.draw(st.sampled_from(keys), label="key")
            parent, node = node, node[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
        if parent is None:
            doc = data.draw(JSON_VALUES, label="new root") if action == "replace" else doc
        elif action == "replace":
            parent[key] = data.draw(JSON_VALUES, label="value")
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(max_size=6), label="new key")] = data.draw(JSON_VALUES, label="value")
        else:
            parent.insert(key, data.draw(JSON_VALUES, label="value"))
    return doc


def _dump(doc) -> bytes:
    # allow_nan: NaN/Infinity literals are what Python-written "JSON" really contains.
    return json.dumps(doc, allow_nan=True).encode()


# ------------------------------------------------------------------------------------------------ valid seeds
def _valid_pts() -> bytes:
    pts = np.random.default_rng(0).uniform(0, 200, (68, 2)).round(3)
    lines = "\n".join(f"{x} {y}" for x, y in pts)
    return f"version: 1\nn_points:  68\n{{\n{lines}\n}}".encode()


def _valid_mpii() -> list:
    rng = np.random.default_rng(1)
    return [
        {"image": f"{i:06d}.png", "center": [50.0, 60.0], "scale": 1.2,
         "joints": [[-1.0, -1.0] if j == 9 else rng.uniform(1, 100, 2).round(2).tolist() for j in range(16)],
         "joints_vis": [0 if j == 9 else 1 for j in range(16)], "headbox": [40.0, 10.0, 60.0, 35.0]}
        for i in range(2)
    ]


def _valid_coco() -> dict:
    kps = []
    for k in range(68):
        kps += [float(k), float(k + 1), 0 if k == 5 else 2]
    return {"images": [{"id": 7, "file_name": "a.png", "width": 100, "height": 90}],
            "annotations": [{"image_id": 7, "keypoints": kps, "bbox": [1.0, 2.0, 50.0, 60.0]}],
            "categories": [{"id": 1, "name": "face"}]}


def _valid_boxes() -> dict:
    return {"test/a.png": [1.0, 2.0, 30.0, 40.0], "b.png": [0, 0, 5, 5]}


def _valid_meta() -> dict:
    from cunet.model import CUNetConfig

    cfg = CUNetConfig(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=16)
    ckpt = {"task": "pose", "config": cfg.to_dict(), "args": {"sigma": 2.0}}
    return meta_mod.ModelMeta.from_checkpoint(ckpt, source_sha256="ab" * 32).to_dict()


def _valid_manifest() -> dict:
    return {"cunet": _valid_meta(), "engine": "model.engine"}


# ------------------------------------------------------------------------------------------- result invariants
def _check_pts(points: np.ndarray) -> None:
    assert points.ndim == 2 and points.shape[1] == 2 and len(points) >= 1 and np.isfinite(points).all()


def _check_mpii(records: list) -> None:
    for r in records:
        if isinstance(r, CunetError):
            continue
        assert r.joints.shape == (16, 2) and r.visible.shape == (16,) and r.visible.dtype == bool
        assert np.isfinite(r.joints[r.visible]).all() and np.isnan(r.joints[~r.visible]).all()
        assert np.isfinite(r.center).all() and math.isfinite(r.scale) and r.scale > 0


def _check_coco(records: list) -> None:
    for r in records:
        assert r.points.shape[1] == 2 and np.isfinite(r.points[r.visible]).all()
        assert np.isnan(r.points[~r.visible]).all()
        assert np.isfinite(r.box).all() and r.box[2] > r.box[0] and r.box[3] > r.box[1]


def _check_boxes(boxes: dict) -> None:
    for box in boxes.values():
        assert box.shape == (4,) and np.isfinite(box).all() and box[2] > box[0] and box[3] > box[1]


def _check_meta(meta) -> None:
    assert meta.task in ("face", "pose") and len(meta.landmark_names) == meta.num_landmarks
    assert meta.input_size % meta.heatmap_stride == 0 and meta.heatmap_size >= 1


# ------------------------------------------------------------------------------------------------- the parsers
def _engine_meta(path: Path):
    # The manifest beside an engine is the metadata's on-disk form for TensorRT (the engine bytes are not read).
    engine = path.with_suffix(".engine")
    meta_mod.engine_manifest_path(engine).write_bytes(path.read_bytes())
    return meta_mod.read_engine_meta(engine)


def _onnx_meta_value(path: Path):
    # The "cunet" metadata_props entry of an ONNX model, as `cunet evaluate/profile/quantize` read it.
    import onnx

    proto = onnx.ModelProto()
    entry = proto.metadata_props.add()
    entry.key, entry.value = "cunet", path.read_bytes().decode("utf-8", "replace")
    return meta_mod.meta_from_onnx_proto(proto, str(path))


#: name → (file name, parser, invariant check of a successful parse, valid seed as bytes or as a JSON document)
PARSERS = {
    "pts": ("a.pts", formats.read_pts, _check_pts, _valid_pts),
    "mpii-json": ("mpii.json", formats.parse_mpii_json, _check_mpii, _valid_mpii),
    "coco-json": ("coco.json", formats.read_coco_keypoints, _check_coco, _valid_coco),
    "box-file": ("boxes.json", formats.read_box_file, _check_boxes, _valid_boxes),
    "meta-manifest": ("manifest.json", _engine_meta, _check_meta, _valid_manifest),
    "meta-onnx-props": ("props.json", _onnx_meta_value, _check_meta, _valid_meta),
}
JSON_PARSERS = sorted(name for name in PARSERS if name != "pts")


def _seed(name: str) -> bytes:
    made = PARSERS[name][3]()
    return made if isinstance(made, bytes) else _dump(made)


def _parse(name: str, work: Path, blob: bytes) -> None:
    """Parse `blob` as file `name`: a CunetError must be one line; a success must satisfy the invariants."""
    file, parse, check, _ = PARSERS[name]
    path = work / file
    path.write_bytes(blob)
    try:
        result = parse(path)
    except CunetError as e:
        assert str(e) and "\n" not in str(e), f"not one line: {e!r}"
        return
    check(result)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_valid_seed_parses(name, work):
    """The mutation tests start from a file the parser accepts (else they would only exercise rejection)."""
    file, parse, check, _ = PARSERS[name]
    (work / file).write_bytes(_seed(name))
    result = parse(work / file)
    check(result)
    if name == "mpii-json":
        assert not any(isinstance(r, CunetError) for r in result)


@pytest.mark.parametrize("name", sorted(PARSERS))
@SETTINGS
@given(blob=st.binary(max_size=600) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_raise_only_cunet_errors(name, blob, work, tally):
    """Random bytes/text → a parse or a one-line CunetError (guards against any other exception type)."""
    tally[f"hypothesis:{name}"] += 1
    _parse(name, work, blob)


@pytest.mark.parametrize("name", sorted(PARSERS))
@SETTINGS
@given(data=st.data())
def test_mutated_files_raise_only_cunet_errors(name, data, work, tally):
    """Truncated / hand-edited versions of a valid file → a parse or a one-line CunetError."""
    tally[f"hypothesis:{name}"] += 1
    _parse(name, work, _mutate_bytes(data, _seed(name)))


@pytest.mark.parametrize("name", JSON_PARSERS)
@SETTINGS
@given(data=st.data())
def test_structurally_mutated_json_raises_only_cunet_errors(name, data, work, tally):
    """Valid JSON with any value swapped for any JSON value (NaN, 2**70, lists, objects) or keys removed/added."""
    tally[f"hypothesis:{name}"] += 1
    _parse(name, work, _dump(_mutate_json(data, PARSERS[name][3]())))
