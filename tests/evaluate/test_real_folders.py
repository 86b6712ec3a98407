"""`evaluate --data` and `metrics --gt` on the real layouts the one detector reads: the 300-W private set (no
--subset, rows named 300w-private/indoor, /outdoor, 300w-private), a flat folder of images + .pts, a COCO face
JSON, and a dataset root whose prediction folder also holds training-split predictions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cunet.cli import main  # noqa: E402
from cunet.data.formats import read_pts  # noqa: E402
from cunet.evaluate.accuracy import evaluate  # noqa: E402

RUN_KEYS = {"model", "task", "backend", "provider", "device", "precision", "flip", "boxes", "skipped",
            "nonfinite_files"}
CLEAN = {"missing": [], "bad": [], "ignored": 0, "skipped": []}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from cunet.data.synth import synthesize
    from cunet.model import CUNet, CUNetConfig
    from cunet.model.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("real")
    synthesize(root / "synth", "face", n=12, seed=2, image_size=96)
    torch.manual_seed(0)
    cfg = CUNetConfig(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)
    save_checkpoint(root / "face.pt", CUNet(cfg).eval(), task="face")
    pairs = sorted((p, next(q for q in p.parent.glob(p.stem + ".*") if q.suffix != ".pts"))
                   for p in (root / "synth").rglob("*.pts"))
    return root, root / "face.pt", pairs


def _place(pairs, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for pts, image in pairs:
        shutil.copy(pts, folder / pts.name)
        shutil.copy(image, folder / image.name)


def _rescored(gt: Path, pred: Path, *extra: str) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "cunet", "metrics", "--task", "face", "--gt", str(gt), "--pred",
                           str(pred), "--json", *extra], capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_300w_private_without_subset(setup, tmp_path):
    _, ckpt, pairs = setup
    data = tmp_path / "300W"
    _place(pairs[:3], data / "300W" / "01_Indoor")
    _place(pairs[3:5], data / "300W" / "02_Outdoor")
    r = evaluate(ckpt, data, save_predictions=tmp_path / "pred")
    assert r["subset"] == "300w-private" and r["n"] == 5
    assert set(r["subsets"]) == {"300w-private/indoor", "300w-private/outdoor", "300w-private"}
    assert r["subsets"]["300w-private/indoor"]["n"] == 3 and r["subsets"]["300w-private/outdoor"]["n"] == 2
    rc, again, _ = _rescored(data, tmp_path / "pred")
    assert rc == 0 and again == {**{k: v for k, v in r.items() if k not in RUN_KEYS}, **CLEAN}
    one = evaluate(ckpt, data, subset="300w-private/outdoor")
    assert one["subset"] == "300w-private/outdoor" and one["n"] == 2 and "subsets" not in one
    assert main(["evaluate", str(ckpt), "--data", str(data)]) == 0  # the table's rows carry the same names


def test_flat_folder_and_coco_json(setup, tmp_path):
    _, ckpt, pairs = setup
    flat = tmp_path / "ibug"
    _place(pairs[:4], flat)
    r = evaluate(ckpt, flat, save_predictions=tmp_path / "pred")
    assert r["subset"] == "all" and r["n"] == 4 and "subsets" not in r
    rc, again, _ = _rescored(flat, tmp_path / "pred")
    assert rc == 0 and again == {**{k: v for k, v in r.items() if k not in RUN_KEYS}, **CLEAN}
    # The same four faces as a COCO-keypoint JSON beside the images: the same predictions and numbers
    data = {"categories": [{"id": 1, "name": "face"}], "images": [], "annotations": []}
    for i, (pts_file, image) in enumerate(pairs[:4]):
        pts = read_pts(flat / pts_file.name)
        data["images"].append({"id": i, "file_name": image.name})
        data["annotations"].append({"id": i, "image_id": i, "bbox": [0, 0, 10, 10],
                                    "keypoints": np.column_stack([pts, np.full(68, 2.0)]).ravel().tolist()})
    coco = flat / "face_landmarks_test.json"
    coco.write_text(json.dumps(data))
    c = evaluate(ckpt, coco, save_predictions=tmp_path / "pred-coco")
    # one split name for a COCO file in every command: "test" after its file name, as `cunet data check` names it
    assert c["nme"] == pytest.approx(r["nme"], rel=1e-9) and c["n"] == 4 and c["subset"] == "test"
    rc, again, _ = _rescored(coco, tmp_path / "pred-coco")
    assert rc == 0 and again["nme"] == c["nme"] and again["ignored"] == 0


def test_dataset_root_scores_its_test_split_and_counts_the_rest(setup, tmp_path):
    root, ckpt, _ = setup
    data = root / "synth"
    evaluate(ckpt, data, save_predictions=tmp_path / "pred")
    evaluate(ckpt, data, split="train", save_predictions=tmp_path / "pred")  # train/*.pts beside them
    n_train = len(list((data / "train").rglob("*.pts")))
    rc, r, err = _rescored(data, tmp_path / "pred")
    assert rc == 0 and r["ignored"] == n_train and not r["missing"] and not r["bad"]
    assert f"{n_train} prediction file(s) outside the scored ground truth ignored" in err
