"""`cunet predict / evaluate / metrics / profile` on videos, through the CLI, with an exported tiny (untrained) model.

The model's landmarks are poor; what is checked is the plumbing: one record per frame, a playable overlay of the
right length and size, bad videos as one `skipped` line each, still images untouched by smoothing, and `metrics`
reproducing `evaluate` on the predictions it saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from cunet.cli import main  # noqa: E402

FRAMES = 8


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from cunet.compile.export import export_onnx
    from cunet.data.synth_video import synthesize_videos
    from cunet.data.video import open_video
    from cunet.model import CUNet, CUNetConfig

    root = tmp_path_factory.mktemp("video-predict")
    torch.manual_seed(0)
    cfg = CUNetConfig(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)
    model = root / "face.onnx"
    export_onnx(CUNet(cfg).eval(), model, task="face", simplify=False, verify=False)
    synthesize_videos(root / "videos", 2, seed=2, frames=FRAMES, image_size=64)
    clip = root / "clip.mp4"  # the sequence re-encoded as MPEG-4, the common case
    writer = cv2.VideoWriter(str(clip), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 64))
    with open_video(root / "videos" / "001" / "vid.avi") as reader:
        for frame in reader:
            writer.write(frame.image)
    writer.release()
    return root, model, clip


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lines_and_a_playable_overlay(env, tmp_path, capsys) -> None:
    root, model, clip = env
    code, out, err = _run(capsys, "predict", model, clip, "--overlay", "--out", tmp_path / "o", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["frames"] == FRAMES and summary["videos"][0]["predicted"] == FRAMES
    lines = (tmp_path / "o" / "clip.jsonl").read_text().splitlines()
    assert len(lines) == FRAMES
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert [r["time"] for r in records] == pytest.approx([i / 25 for i in range(FRAMES)])
    assert all(np.asarray(r["points"]).shape == (68, 2) and len(r["scores"]) == 68 for r in records)
    assert {"x1", "y1", "x2", "y2"} <= set(records[0]["box"]) and records[0]["redetected"]
    cap = cv2.VideoCapture(str(tmp_path / "o" / "clip.overlay.mp4"))
    n, shapes = 0, set()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shapes = n + 1, shapes | {frame.shape}
    assert n == FRAMES and shapes == {(64, 64, 3)}
    assert ".cunet-outputs" in {p.name for p in (tmp_path / "o").iterdir()}  # written through cunet.io


def test_csv_with_a_box_per_frame(env, tmp_path, capsys) -> None:
    _, model, clip = env
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"clip.mp4": [[10, 12, 50, 52]] * FRAMES}))
    code, out, err = _run(capsys, "predict", model, clip, "--boxes", boxes, "--format", "csv", "--out",
                          tmp_path / "o", "--json")
    assert code == 0, err
    assert json.loads(out)["box_sources"] == {"box file boxes.json": FRAMES}
    rows = (tmp_path / "o" / "clip.csv").read_text().splitlines()
    assert len(rows) == FRAMES + 1 and rows[0].startswith("frame,time,box_x1,box_y1,box_x2,box_y2,box_source")
    assert len(rows[1].split(",")) == 11 + 3 * 68


@pytest.mark.parametrize("given, bad_frame", [
    ([1e9, 1e9, 2e9, 2e9], 0),                              # frame 0's box, wholly outside the 64x64 frame
    ([-500, -500, -400, -400], 0),                          # ... on the other side
    ([[10, 12, 50, 52], [1e300, 1, 1e301, 2]] + [[10, 12, 50, 52]] * (FRAMES - 2), 1),  # one per frame: frame 1's
])
def test_a_given_box_outside_its_frame_skips_that_frame_with_a_line(env, tmp_path, capsys, given, bad_frame) -> None:
    """As a still image with such a box: that frame is skipped and named, the rest predicted, exit 1 (the batch
    rule). Before, frame 0 was predicted far outside the picture, and a 1e300 box was a LinAlgError traceback."""
    _, model, clip = env
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"clip.mp4": given}))
    code, out, err = _run(capsys, "predict", model, clip, "--boxes", boxes, "--no-detect", "--out", tmp_path / "o",
                          "--json")
    assert code == 1 and "Traceback" not in err
    assert f"frame {bad_frame}: box file boxes.json: crop box" in err and "outside the 64x64 image" in err
    records = [json.loads(line) for line in (tmp_path / "o" / "clip.jsonl").read_text().splitlines()]
    assert len(records) == FRAMES
    assert [r["frame"] for r in records if "skipped" in r] == [bad_frame]
    assert all(np.asarray(r["points"]).shape == (68, 2) for r in records if "skipped" not in r)
    assert all(-64 <= v <= 128 for r in records if "skipped" not in r for v in np.asarray(r["points"]).ravel())


def test_bad_videos_are_one_skipped_line_each(env, tmp_path, capsys) -> None:
    _, model, clip = env
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "text.mp4").write_text("this is not a video\n")
    cv2.VideoWriter(str(bad / "zero.avi"), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 64)).release()
    whole = (env[0] / "videos" / "002" / "vid.avi").read_bytes()
    (bad / "cut.avi").write_bytes(whole[: len(whole) // 2])
    code, _, err = _run(capsys, "predict", model, clip, bad, "--no-detect", "--out", tmp_path / "o")
    assert code == 1
    assert "Traceback" not in err
    skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert {line.split(":")[0] for line in skipped} == {f"skipped {bad / n}" for n in
                                                         ("empty.mp4", "text.mp4", "zero.avi", "cut.avi")}
    assert any("empty file" in s for s in skipped) and any("no frames" in s for s in skipped)
    assert any("ends after" in s for s in skipped)  # the truncated one is predicted as far as it goes
    assert len((tmp_path / "o" / "clip.jsonl").read_text().splitlines()) == FRAMES


def test_smoothing_changes_videos_but_never_still_images(env, tmp_path, capsys) -> None:
    root, model, clip = env
    image = tmp_path / "frame.png"
    cap = cv2.VideoCapture(str(clip))
    cv2.imwrite(str(image), cap.read()[1])
    cap.release()
    outs = {}
    for smooth in ("none", "one-euro"):
        # --min-score 0: the untrained model's low peaks would count as lost (and restart the filter) every frame
        code, _, err = _run(capsys, "predict", model, image, clip, "--smooth", smooth, "--smooth-min-cutoff", "0.5",
                            "--min-score", "0", "--out", tmp_path / smooth)
        assert code == 0, err
        outs[smooth] = (json.loads((tmp_path / smooth / "frame.json").read_text())["instances"],
                        [json.loads(x)["points"] for x in (tmp_path / smooth / "clip.jsonl").read_text().splitlines()])
    assert outs["none"][0] == outs["one-euro"][0]
    assert outs["none"][1][0] == outs["one-euro"][1][0]  # frame 0 passes through the filter
    assert outs["none"][1][-1] != outs["one-euro"][1][-1]


def test_without_the_detector_predict_says_what_to_install(env, tmp_path, capsys, monkeypatch) -> None:
    _, model, clip = env
    monkeypatch.setattr("cunet.runtime.detector.detector_available", lambda: False)
    code, _, err = _run(capsys, "predict", model, clip, "--out", tmp_path / "o")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: the whole frame is the face box for ")
    assert notes[0].endswith("video frame(s); pip install 'cunet[detect]' for a face detector, or give boxes with "
                             "--boxes")


def test_evaluate_reports_jitter_per_video_and_metrics_reproduces_it(env, tmp_path, capsys) -> None:
    root, model, _ = env
    code, out, err = _run(capsys, "evaluate", model, "--data", root / "videos", "--save-predictions",
                          tmp_path / "p", "--json")
    assert code == 0, err
    ev = json.loads(out)
    assert set(ev["videos"]) == {"001", "002"} and ev["n"] == 2 * FRAMES and ev["pairs"] == 2 * (FRAMES - 1)
    assert ev["jitter"] > 0 and ev["nme"] > 0 and ev["smooth"] == {"method": "none"}
    code, out, err = _run(capsys, "metrics", "--task", "face", "--gt", root / "videos", "--pred", tmp_path / "p",
                          "--json")
    assert code == 0, err
    me = json.loads(out)
    assert me["nme"] == pytest.approx(ev["nme"], rel=1e-9) and me["jitter"] == pytest.approx(ev["jitter"], rel=1e-9)
    assert me["videos"]["002"]["jitter"] == pytest.approx(ev["videos"]["002"]["jitter"], rel=1e-9)


def test_profile_video_times_every_stage(env, capsys) -> None:
    _, model, clip = env
    code, out, err = _run(capsys, "profile", model, "--video", clip, "--warmup", "2", "--threads", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert list(report["stages"]) == ["decode", "detect/track", "crop", "inference", "landmarks", "smooth"]
    assert report["frames"] == FRAMES - 2 and report["fps"] > 0
    assert sum(report["share_pct"].values()) == pytest.approx(100.0)
    assert report["stages"]["inference"]["mean"] > 0
