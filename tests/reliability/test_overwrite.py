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


# ------------------------------------------------------------------- issue 22: the one rule, every command
def test_a_file_output_replaces_its_own_file_and_a_foreign_one_only_with_force(tmp_path, face_data, capsys):
    plot = tmp_path / "ced.png"
    plot.write_bytes(b"my own picture")
    args = ["metrics", "--task", "face", "--gt", str(face_data), "--pred", str(face_data), "--plot", str(plot)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ced.png: exists" in err and "--force" in err, err
    assert plot.read_bytes() == b"my own picture"
    assert main([*args, "--force"]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    entry = json.loads((tmp_path / MANIFEST_NAME).read_text())["files"]["ced.png"]
    assert entry["by"] == "cunet metrics --plot" and entry["size"] == plot.stat().st_size
    assert main(args) == 0  # its own output now: a rerun replaces it without --force


def test_evaluate_never_writes_a_prediction_outside_its_folder(tmp_path, face_onnx, capsys):
    """A COCO file_name that leaves the dataset (`../elsewhere/x.png`) would put its .pts beside that image, over the
    user's own annotation there: refused, in one line, before any inference."""
    image, pts = _real_face(tmp_path)
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    doc = json.loads((FIXTURES / "300w" / "test_300w.json").read_text())
    doc["images"] = [i for i in doc["images"] if (FIXTURES / "300w" / i["file_name"]).is_file()]
    for i in doc["images"]:
        shutil.copy(FIXTURES / "300w" / i["file_name"], data / i["file_name"])
    escaping = doc["images"][0]
    shutil.copy(data / escaping["file_name"], elsewhere / escaping["file_name"])
    victim = elsewhere / Path(escaping["file_name"]).with_suffix(".pts")
    shutil.copy(pts, victim)
    escaping["file_name"] = f"../elsewhere/{escaping['file_name']}"
    (data / "test.json").write_text(json.dumps(doc))
    before = victim.read_bytes()
    code = main(["evaluate", str(face_onnx), "--data", str(data / "test.json"), "--save-predictions",
                 str(tmp_path / "preds")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("error:") == 1 and "Traceback" not in err, err
    assert victim.read_bytes() == before
    outside = sorted(p for p in tmp_path.rglob("*.pts") if tmp_path / "preds" not in p.parents)
    assert outside == sorted([victim, pts])  # nothing predicted outside --save-predictions


@pytest.mark.parametrize("key", ["../elsewhere/x.pts", "a/../../x.pts", "{tmp}/elsewhere/x.pts"])
def test_the_writer_refuses_a_key_that_leaves_the_output_folder(tmp_path, key):
    """The write side, whatever the readers let through: a key joined to an output folder that leaves it (`..`, or
    an absolute key, which replaces the folder when joined)."""
    with writing(_predict_policy(tmp_path / "out")):
        with pytest.raises(CunetError, match="outside what this command writes"):
            write_json(tmp_path / "out" / key.format(tmp=tmp_path), {"x": 1})
    assert not list(tmp_path.rglob("x.pts"))


def test_quantize_openvino_refuses_a_foreign_bin_beside_its_xml_before_quantizing(tmp_path, face_onnx, face_data,
                                                                                 capsys):
    pytest.importorskip("nncf")
    (tmp_path / "ov.bin").write_bytes(b"someone's weights")
    code = main(["quantize", str(face_onnx), "--recipe", "openvino", "--data", str(face_data), "-o",
                 str(tmp_path / "ov.xml")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "ov.bin: exists" in err, err
    assert (tmp_path / "ov.bin").read_bytes() == b"someone's weights" and not (tmp_path / "ov.xml").exists()


def test_train_resume_adopts_a_run_written_before_manifests(tmp_path, face_data, capsys):
    """A run folder from before every command kept .cunet-outputs (written by the library, no policy): `train
    --resume` continues it, since the last.pt it validates proves the run is its own; a fresh run there is refused."""
    from cunet.train.trainer import TrainOptions, train

    run = tmp_path / "run"
    common = dict(task="face", data=str(face_data), out=str(run), workers=0, device="cpu", progress=False, seed=0,
                  overrides={"input_size": 64})
    train(TrainOptions(**common, epochs=1))
    (run / MANIFEST_NAME).unlink()  # as an older cunet left it

    args = ["train", "--task", "face", "--data", str(face_data), "--out", str(run), "--input-size", "64",
            "--device", "cpu", "--seed", "0"]
    assert main([*args, "--epochs", "2"]) == 1  # not --resume: the run is not this command's to start over
    capsys.readouterr()
    assert main([*args, "--epochs", "2", "--resume"]) == 0, capsys.readouterr().err
    listed = json.loads((run / MANIFEST_NAME).read_text())["files"]
    assert {"last.pt", "best.pt", "history.json", "log.csv"} <= set(listed)
    assert {e["by"] for e in listed.values()} == {"cunet train --out"}
