"""Video sources (files, frame folders, bad files) and the synthetic 300-VW sequences, with tiny files made here."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cunet.data.video import annot_name, is_video_dataset, open_video, read_video_dataset
from cunet.errors import CunetError


def _write(path: Path, frames: int, fourcc: str = "MJPG", size: tuple[int, int] = (64, 48)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), 10.0, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        w.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    w.release()
    return path


def test_frames_come_in_order_with_timestamps_from_the_fps(tmp_path: Path) -> None:
    with open_video(_write(tmp_path / "clip.AVI", 6)) as r:  # any case of the suffix
        frames = list(r)
    assert r.fps == 10.0 and r.frame_count == 6 and r.size == (64, 48) and r.ended_early is None
    assert [f.index for f in frames] == list(range(6))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(6)])
    assert all(f.image is not None and f.image.shape == (48, 64, 3) for f in frames)


@pytest.mark.parametrize("what, make, message", [
    ("empty", lambda p: p.write_bytes(b""), "empty file"),
    ("text", lambda p: p.write_text("not a video at all\n"), "not a video FFmpeg can read"),
    ("zero frames", lambda p: _write(p, 0), "no frames"),
])
def test_unusable_videos_are_one_line(tmp_path: Path, what, make, message) -> None:
    path = tmp_path / ("x.avi" if what == "zero frames" else "x.mp4")
    make(path)
    with pytest.raises(CunetError, match=message) as e:
        open_video(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_truncated_video_says_how_far_it_got(tmp_path: Path) -> None:
    whole = _write(tmp_path / "whole.avi", 10).read_bytes()
    (tmp_path / "cut.avi").write_bytes(whole[: len(whole) // 2])
    with open_video(tmp_path / "cut.avi") as r:
        n = sum(1 for _ in r)
    assert 0 < n < 10
    assert r.ended_early == f"the video ends after {n} of the 10 frames its header announces (truncated or damaged file)"


def test_frame_folder_natural_order_and_a_bad_frame_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in (1, 2, 10):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (folder / "f3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with open_video(folder, fps=5) as r:
        frames = list(r)
    assert [f.image[0, 0, 0] if f.image is not None else None for f in frames] == [1, 2, None, 10]
    assert frames[2].problem.startswith("frame 2 (f3.png): ") and frames[3].time == pytest.approx(0.6)
    with pytest.raises(CunetError, match="no frames"):
        open_video(tmp_path)  # only a sub-folder, no images at its top level


def test_synthetic_sequences_layout_determinism_and_exact_motion(tmp_path: Path) -> None:
    from cunet.data.formats import read_pts
    from cunet.data.synth_video import synthesize_videos

    summary = synthesize_videos(tmp_path / "a", 2, seed=4, frames=8, image_size=64)
    synthesize_videos(tmp_path / "b", 2, seed=4, frames=8, image_size=64)
    assert summary["codec"] == "FFV1 (lossless)" and is_video_dataset(tmp_path / "a")
    seqs = read_video_dataset(tmp_path / "a")
    assert [s.name for s in seqs] == ["001", "002"] and seqs[0].video.name == "vid.avi"
    assert sorted(p.name for p in seqs[0].annotations.values()) == [annot_name(i) for i in range(8)]
    assert annot_name(0) == "000001.pts"
    for rel in ("001/vid.avi", "002/annot/000008.pts"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    pts = np.stack([read_pts(seqs[0].annotations[i]) for i in range(8)])
    assert pts.min() >= 0 and pts.max() <= 63
    # every frame is one similarity transform of frame 0 (translation, rotation, scale): exact to the 1/1000 px
    # the .pts files keep
    for p in pts[1:]:
        a = np.column_stack([pts[0], np.ones(68)])
        m, *_ = np.linalg.lstsq(a, p, rcond=None)
        assert np.abs(a @ m - p).max() < 2e-3
        assert m[0, 0] == pytest.approx(m[1, 1], abs=1e-4) and m[1, 0] == pytest.approx(-m[0, 1], abs=1e-4)
    with open_video(seqs[0].video) as r:
        assert r.frame_count == 8 and r.size == (64, 64) and r.fps == 25.0
