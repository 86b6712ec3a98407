"""Nothing lost (issue 18, defects 1-2): writers replace only files their own manifest proves they wrote.

Real files, real commands: `cunet data synth --overwrite` over folders holding a user's real 300-W face, and
`cunet predict` over a folder whose images share a stem, through the installed CLI entry point.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cunet.cli import main
from cunet.errors import CunetError
from cunet.io import MANIFEST_NAME, Output, WritePolicy, check_writable, write_json, writing

FIXTURES = Path("../shared/fixtures")


def _real_face(tmp_path: Path) -> tuple[Path, Path]:
    """A real 300-W image and its 68 points as a real .pts file (from the fixtures' COCO-style annotation)."""
    import numpy as np

    from cunet.data.formats import write_pts

    ann_file = FIXTURES / "300w" / "test_300w.json"
    if not ann_file.is_file():
        pytest.skip("no real 300-W sample in ../shared/fixtures")
    doc = json.loads(ann_file.read_text())
    image = next(i for i in doc["images"] if (FIXTURES / "300w" / i["file_name"]).is_file())
    ann = next(a for a in doc["annotations"] if a["image_id"] == image["id"])
    pts = tmp_path / "fixture" / (Path(image["file_name"]).stem + ".pts")
    pts.parent.mkdir(parents=True, exist_ok=True)
    write_pts(pts, np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)[:, :2])
    return FIXTURES / "300w" / image["file_name"], pts


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_synth_overwrite_refuses_a_folder_of_real_faces_and_deletes_nothing(tmp_path, capsys):
    image, pts = _real_face(tmp_path)
    out = tmp_path / "real"
    (out / "test" / "common").mkdir(parents=True)
    (out / "train").mkdir()
    shutil.copy(image, out / "test" / "common" / f"einstein{image.suffix}")
    shutil.copy(pts, out / "test" / "common" / "einstein.pts")
    shutil.copy(image, out / "train" / "my_face.png")
    before = _snapshot(out)
    code = main(["data", "synth", "--task", "face", "--out", str(out), "--n", "4", "--image-size", "64", "--overwrite"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "einstein" in err and "none written" in err, err
    assert _snapshot(out) == before  # every file there, byte for byte


def test_synth_overwrite_replaces_its_own_files_and_keeps_the_users(tmp_path):
    image, pts = _real_face(tmp_path)
    out = tmp_path / "d"
    assert main(["data", "synth", "--task", "face", "--out", str(out), "--n", "8", "--image-size", "64"]) == 0
    assert (out / MANIFEST_NAME).is_file()
    shutil.copy(pts, out / "test" / "common" / "einstein.pts")
    shutil.copy(image, out / "test" / "common" / f"einstein{image.suffix}")
    assert main(["data", "synth", "--task", "face", "--out", str(out), "--n", "3", "--image-size", "64",
                 "--overwrite"]) == 0
    assert (out / "test" / "common" / "einstein.pts").read_bytes() == pts.read_bytes()
    assert (out / "test" / "common" / f"einstein{image.suffix}").read_bytes() == image.read_bytes()
    synth_pngs = [p for p in out.rglob("*.png") if not p.stem.startswith("einstein")]
    assert len(synth_pngs) == 3  # the 8-image run's files are gone, the 3-image run's are there


def test_synth_overwrite_refuses_to_write_over_an_edited_file(tmp_path):
    out = tmp_path / "d"
    assert main(["data", "synth", "--task", "pose", "--out", str(out), "--n", "3", "--image-size", "64"]) == 0
    edited = out / "train.json"
    edited.write_text("[]\n")  # the user's own annotations now: not provably ours any more
    with pytest.raises(CunetError, match="train.json"):
        from cunet.data.synth import synthesize

        synthesize(out, "pose", n=3, image_size=64, overwrite=True)
    assert edited.read_text() == "[]\n"


def _predict_policy(folder: Path) -> WritePolicy:
    return WritePolicy([Output(folder, "cunet predict", "--out", folder=True)])


def test_the_manifest_refuses_a_foreign_file_at_a_path_it_would_write(tmp_path):
    (tmp_path / "a.json").write_text("theirs")
    with writing(_predict_policy(tmp_path)):
        with pytest.raises(CunetError, match="a.json"):
            check_writable([tmp_path / "a.json"])
        write_json(tmp_path / "b.json", {"x": 1})
    again = _predict_policy(tmp_path)
    assert again.proves(tmp_path / "b.json") and not again.proves(tmp_path / "a.json")
    with writing(again):
        check_writable([tmp_path / "b.json"])  # its own earlier output may be replaced


def test_predict_gives_colliding_stems_distinct_names(tmp_path, face_ckpt, capsys):
    import cv2
    import numpy as np

    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "face.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "face.jpg"), rng.integers(0, 255, (80, 72, 3), dtype=np.uint8))
    out = tmp_path / "preds"
    assert main(["predict", str(face_ckpt), str(images), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 2
    docs = {p.name: json.loads(p.read_text()) for p in out.glob("*.json") if p.name != MANIFEST_NAME}
    assert set(docs) == {"face.png.json", "face.jpg.json"}
    assert {Path(d["image"]).name for d in docs.values()} == {"face.png", "face.jpg"}
    assert {p.name for p in out.glob("*.overlay.png")} == {"face.png.overlay.png", "face.jpg.overlay.png"}


def test_predict_refuses_to_overwrite_a_file_it_did_not_write(tmp_path, face_ckpt, capsys):
    import cv2
    import numpy as np

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 120, np.uint8))
    out = tmp_path / "preds"
    out.mkdir()
    (out / "face.json").write_text("my notes")
    assert main(["predict", str(face_ckpt), str(image), "--out", str(out)]) == 1
    assert "face.json" in capsys.readouterr().err
    assert (out / "face.json").read_text() == "my notes"
    (out / "face.json").unlink()
    assert main(["predict", str(face_ckpt), str(image), "--out", str(out)]) == 0
    assert main(["predict", str(face_ckpt), str(image), "--out", str(out)]) == 0  # its own outputs: replaced
