"""Crashes and silent results (issue 18, defects 3, 4, 8): decompression bombs, and batches with one bad input.

A PNG whose header declares 36000 x 36000 pixels (a few hundred bytes on disk) must be one line naming it in every
command that reads images, before a pixel is decoded. A batch with a truncated JPEG or an image without a box
finishes the rest, names the bad one, and exits 1; `--strict` stops at the first.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from cunet.cli import main
from cunet.errors import CunetError


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb(path: Path, side: int = 36000) -> Path:
    """A PNG declaring side x side RGB pixels; its data holds a few zero rows (decoding would allocate it all)."""
    rows = zlib.compress(b"\0" * ((3 * side + 1) * 4), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + _chunk(b"IDAT", rows) + _chunk(b"IEND", b""))
    return path


def _truncate_jpeg(src_png: Path, out: Path) -> Path:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.imread(str(src_png)))
    assert ok
    out.write_bytes(buf.tobytes()[: len(buf) // 2])
    return out


def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and all(n in lines[0] for n in needles), err


def test_bomb_is_one_line_before_decoding(tmp_path):
    from cunet.data.dataset import read_image
    from cunet.data.image_limit import declared_size

    bomb = write_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 10_000 and declared_size(bomb) == (36000, 36000)
    with pytest.raises(CunetError, match=r"bomb\.png: image declares 36000x36000 = 1,296,000,000 pixels"):
        read_image(bomb)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch, face_data):
    from cunet.data.dataset import read_image

    image = sorted((face_data / "train").glob("*.png"))[0]  # 64 x 64
    assert read_image(image).shape == (64, 64, 3)
    monkeypatch.setenv("CUNET_MAX_IMAGE_PIXELS", "4000")
    with pytest.raises(CunetError, match="4,096 pixels, over the limit of 4,000"):
        read_image(image)
    monkeypatch.setenv("CUNET_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(CunetError, match="CUNET_MAX_IMAGE_PIXELS"):
        read_image(image)


def test_data_check_lists_a_bomb_as_a_bad_file(tmp_path, face_data, capsys):
    import shutil

    root = tmp_path / "faces"
    shutil.copytree(face_data, root)
    victim = sorted((root / "train").glob("*.png"))[0]
    write_bomb(victim)
    assert main(["data", "check", str(root), "--task", "face", "--json"]) == 1
    out, err = capsys.readouterr()
    problems = json.loads(out)["problems"]
    assert [p["file"] for p in problems] == [str(victim)] and "over the limit" in problems[0]["problem"]
    assert "Traceback" not in err


def test_predict_skips_a_bomb_and_a_truncated_jpeg_and_finishes(tmp_path, face_data, face_ckpt, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    good = sorted((face_data / "train").glob("*.png"))[:2]
    for g in good:
        (images / g.name).write_bytes(g.read_bytes())
    write_bomb(images / "bomb.png")
    _truncate_jpeg(good[0], images / "cut.jpg")
    out = tmp_path / "preds"
    code = main(["predict", str(face_ckpt), str(images), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    result = json.loads(captured.out)
    assert result["images"] == 2 and sorted(Path(f["file"]).name for f in result["failed"]) == ["bomb.png", "cut.jpg"]
    assert {p.name for p in out.glob("*.json")} == {f"{g.stem}.json" for g in good}
    skips = [line for line in captured.err.splitlines() if line.startswith("skipped ")]
    assert len(skips) == 2 and "Traceback" not in captured.err
    assert captured.err.strip().splitlines()[-1].startswith("error: skipped 2 file(s) that cannot be used; 2 image(s) "
                                                            "predicted")
    # --strict: the first bad image (sorted: bomb.png) stops the run in one line.
    code = main(["predict", str(face_ckpt), str(images), "--out", str(tmp_path / "strict"), "--strict"])
    _one_line(capsys.readouterr().err, "bomb.png", "over the limit")
    assert code == 1


def test_predict_with_boxes_skips_the_image_without_a_box(tmp_path, face_data, face_ckpt, capsys):
    images = sorted((face_data / "train").glob("*.png"))[:4]
    boxes = {p.name: [2, 2, 60, 60] for i, p in enumerate(images) if i != 1}  # the second has no box
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "preds"
    code = main(["predict", str(face_ckpt), *map(str, images), "--boxes", str(tmp_path / "boxes.json"),
                 "--out", str(out), "--no-draw"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(p.stem for i, p in enumerate(images) if i != 1)
    assert f"skipped {images[1]}: no box for this image" in err


def test_evaluate_skips_a_truncated_image_and_scores_the_rest(tmp_path, face_data, face_ckpt, capsys):
    import shutil

    root = tmp_path / "faces"
    shutil.copytree(face_data, root)
    tests = sorted((root / "test").rglob("*.png"))
    assert main(["evaluate", str(face_ckpt), "--data", str(root), "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    victim = tests[0]
    victim.write_bytes(victim.read_bytes()[:-40])  # the IEND chunk is gone: a writer that stopped
    code = main(["evaluate", str(face_ckpt), "--data", str(root), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    result = json.loads(captured.out)
    assert result["n"] == full["n"] - 1 and [s["file"] for s in result["skipped"]] == [str(victim)]
    assert f"skipped {victim}: truncated PNG" in captured.err
    code = main(["evaluate", str(face_ckpt), "--data", str(root), "--strict"])
    _one_line(capsys.readouterr().err, str(victim), "truncated PNG")
    assert code == 1


def test_calibrate_reports_images_used_and_skips_a_bomb(tmp_path, face_data, face_onnx, capsys):
    folder = tmp_path / "calib"
    folder.mkdir()
    for p in sorted((face_data / "train").glob("*.png"))[:5]:
        (folder / p.name).write_bytes(p.read_bytes())
    args = ["calibrate", str(face_onnx), "--data", str(folder), "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert main([*args, "--samples", "16"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["samples"] == 5 and result["requested"] == 16
    assert "warning: calibrated on 5 image(s), 16 requested" in captured.err
    write_bomb(folder / "zz_bomb.png")
    assert main([*args, "--samples", "16"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["samples"] == 5 and [Path(s["file"]).name for s in result["skipped"]] == ["zz_bomb.png"]
    assert "skipped " in captured.err and "Traceback" not in captured.err
    assert main([*args, "--samples", "16", "--strict"]) == 1
    _one_line(capsys.readouterr().err, "zz_bomb.png", "over the limit")
