"""Video input: files OpenCV's FFmpeg backend decodes, folders of frames, and the 300-VW dataset layout.

Sources. A video file (`VIDEO_SUFFIXES`, any case) is read with `cv2.VideoCapture(path, cv2.CAP_FFMPEG)`; a folder
of images (any of `IMAGE_SUFFIXES`, at its top level, in natural order: `frame2.png` before `frame10.png`) is a
frame sequence. Frames come out as `Frame(index, time, image)` with 0-based indices; `time` is index / fps in
seconds: the video's own frame rate, or for a frame folder (which has none) the `fps` given (default
`DEFAULT_FOLDER_FPS`).

Bad input is one line, never a traceback: `open_video` raises `CunetError` for a missing or empty file, a file
FFmpeg cannot open (a text file named `.mp4`, an `.mp4` cut before its index), and a video or folder with no frame.
A frame that cannot be decoded inside a readable video is a `Frame` with `image=None` and a `problem` (the caller
skips it and goes on); a stream that ends before the frame count its header announced (a truncated `.avi`) leaves
`VideoReader.ended_early` set. FFmpeg's and OpenCV's own log lines are silenced, so those are the only words.

300-VW layout (Shen et al., ICCVW 2015): one folder per video, `NNN/vid.avi` (or another video suffix) and
`NNN/annot/000001.pts` ... one iBUG `.pts` per frame, 1-based frame numbers in 6 digits. `read_video_dataset`
lists its sequences; frame numbers become 0-based indices here, as coordinates do everywhere in cunet.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from cunet.data.layout import IMAGE_SUFFIXES
from cunet.errors import CunetError

__all__ = ["VIDEO_SUFFIXES", "DEFAULT_FOLDER_FPS", "Frame", "VideoReader", "open_video", "is_video_file",
           "is_frame_folder", "annot_name", "VideoSequence", "read_video_dataset", "is_video_dataset"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
#: The frame rate a folder of frames is played at unless told otherwise (it carries no timestamps).
DEFAULT_FOLDER_FPS = 30.0
#: A header frame rate outside this range is not believed (some files say 0 or 90000).
_FPS_RANGE = (0.5, 1000.0)
_ANNOT = re.compile(r"^(\d+)\.pts$", re.IGNORECASE)


def is_video_file(path: str | os.PathLike) -> bool:
    """True for a file whose suffix is a video suffix (any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _frame_files(folder: Path) -> list[Path]:
    return sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                   and not f.name.startswith(".")), key=lambda f: _natural_key(f.name))


def is_frame_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding images at its top level (a sequence of frames)."""
    p = Path(path)
    return p.is_dir() and bool(_frame_files(p))


@dataclass(frozen=True)
class Frame:
    """One frame of a source.

    Attributes:
        index: 0-based frame number.
        time: seconds since the first frame (index / fps).
        image: BGR uint8 [H, W, 3], or None when the frame could not be decoded.
        problem: why `image` is None.
    """

    index: int
    time: float
    image: np.ndarray | None
    problem: str | None = None


def _quiet_ffmpeg() -> None:
    # FFmpeg prints "moov atom not found" and the like on the process's stderr; cunet says it in one line instead.
    # The variable is read when OpenCV first opens a file with FFmpeg; a value the user set wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@dataclass
class VideoReader:
    """Frames of a video file or a frame folder (open it with `open_video`; iterate once; `close` when done).

    Attributes:
        path: the file or folder.
        kind: "video" or "frames".
        fps: frames per second used for timestamps.
        frame_count: frames the header announces (videos) or image files (folders); None when unknown.
        size: (width, height) of the first frame.
        ended_early: after iterating, why the stream ended before `frame_count` frames (else None).
    """

    path: Path
    kind: str
    fps: float
    frame_count: int | None
    size: tuple[int, int]
    ended_early: str | None = None
    _capture: object = field(default=None, repr=False)
    _files: list[Path] = field(default_factory=list, repr=False)
    _first: np.ndarray | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "frames":
            yield from self._folder_frames()
        else:
            yield from self._video_frames()

    def _folder_frames(self) -> Iterator[Frame]:
        from cunet.data.dataset import read_image

        for i, f in enumerate(self._files):
            try:
                image = self._first if i == 0 and self._first is not None else read_image(f)
                yield Frame(i, i / self.fps, image)
            except CunetError as e:
                yield Frame(i, i / self.fps, None, f"frame {i} ({f.name}): {str(e).removeprefix(f'{f}: ')}")

    def _video_frames(self) -> Iterator[Frame]:
        cap = self._capture
        # `open_video` grabbed frame 0 already: its image, or its problem when it did not decode.
        yield Frame(0, 0.0, self._first, None if self._first is not None else "frame 0: could not be decoded")
        index = 1
        while cap is not None and cap.grab():  # type: ignore[attr-defined]
            ok, image = cap.retrieve()  # type: ignore[attr-defined]
            if ok and image is not None:
                yield Frame(index, index / self.fps, _bgr(image))
            else:
                yield Frame(index, index / self.fps, None, f"frame {index}: could not be decoded")
            index += 1
        if self.frame_count is not None and index < self.frame_count:
            self.ended_early = (f"the video ends after {index} of the {self.frame_count} frames its header "
                                "announces (truncated or damaged file)")

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()  # type: ignore[attr-defined]
            self._capture = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bgr(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def open_video(path: str | os.PathLike, fps: float | None = None) -> VideoReader:
    """Open a video file or a frame folder and decode its first frame (so an unusable source fails here).

    Args:
        path: a video file (`VIDEO_SUFFIXES`) or a folder of images.
        fps: timestamps of a frame folder (None: `DEFAULT_FOLDER_FPS`); for a video file, used only when its
            header's frame rate is missing or absurd.

    Raises:
        CunetError: a missing path, an empty file, a file FFmpeg cannot read, a source without frames, or a
            first frame over the pixel limit (`cunet.data.image_limit`).
    """
    p = Path(path)
    if fps is not None and not (_FPS_RANGE[0] <= fps <= _FPS_RANGE[1]):
        raise CunetError(f"fps must be between {_FPS_RANGE[0]:g} and {_FPS_RANGE[1]:g}, got {fps}")
    if p.is_dir():
        files = _frame_files(p)
        if not files:
            raise CunetError(f"{p}: no frames ({' '.join(IMAGE_SUFFIXES)}) in this folder")
        return _open_folder(p, files, fps)
    if not p.exists():
        raise CunetError(f"{p}: no such file or folder")
    if not p.is_file() or not is_video_file(p):
        raise CunetError(f"{p}: not a video ({' '.join(VIDEO_SUFFIXES)}) or a folder of frames")
    if p.stat().st_size == 0:
        raise CunetError(f"{p}: empty file")
    return _open_capture(p, fps)


def _open_folder(p: Path, files: list[Path], fps: float | None) -> VideoReader:
    from cunet.data.dataset import read_image

    problems = []
    for i, f in enumerate(files):  # the size comes from the first frame that reads; a bad one is skipped later
        try:
            image = read_image(f)
        except CunetError as e:
            problems.append(str(e))
            continue
        h, w = image.shape[:2]
        return VideoReader(p, "frames", fps or DEFAULT_FOLDER_FPS, len(files), (w, h), _files=files,
                           _first=image if i == 0 else None)
    raise CunetError(f"{p}: none of its {len(files)} frames could be read (first: {problems[0]})")


def _open_capture(p: Path, fps: float | None) -> VideoReader:
    import cv2

    from cunet.data.image_limit import max_pixels

    _quiet_ffmpeg()
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise CunetError(f"{p}: not a video FFmpeg can read (damaged, truncated before its index, or another "
                             "kind of file)")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w * h > max_pixels():
            cap.release()
            raise CunetError(f"{p}: frames of {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels():,}")
        announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        rate = float(cap.get(cv2.CAP_PROP_FPS))
        if not cap.grab():
            cap.release()
            raise CunetError(f"{p}: the video has no frames")
        ok, image = cap.retrieve()
        first = _bgr(image) if ok and image is not None else None  # None: the iteration reports frame 0
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not (_FPS_RANGE[0] <= rate <= _FPS_RANGE[1]):
        rate = fps or DEFAULT_FOLDER_FPS
    size = (first.shape[1], first.shape[0]) if first is not None else (w, h)
    return VideoReader(p, "video", rate, announced if announced > 0 else None, size, _capture=cap, _first=first)


# ------------------------------------------------------------------------------------------ the 300-VW layout


def annot_name(index: int) -> str:
    """The 300-VW annotation file of 0-based frame `index`: `000001.pts` for frame 0."""
    return f"{index + 1:06d}.pts"


@dataclass(frozen=True)
class VideoSequence:
    """One video of a 300-VW-layout folder.

    Attributes:
        name: the folder's name relative to the dataset root ("001").
        video: its video file, or None when the folder has none (predictions have annotations only).
        annotations: 0-based frame index → its `.pts` file, in frame order.
    """

    name: str
    video: Path | None
    annotations: dict[int, Path]


def _sequence(folder: Path, root: Path) -> VideoSequence | None:
    annot = folder / "annot"
    if not annot.is_dir():
        return None
    frames: dict[int, Path] = {}
    for f in annot.iterdir():
        m = _ANNOT.match(f.name)
        if m and f.is_file() and int(m.group(1)) >= 1:
            frames[int(m.group(1)) - 1] = f
    videos = sorted(f for f in folder.iterdir() if f.is_file() and is_video_file(f))
    preferred = [f for f in videos if f.stem.lower() == "vid"]
    video = (preferred or videos or [None])[0]
    if not frames and video is None:
        return None
    return VideoSequence(folder.relative_to(root).as_posix(), video, dict(sorted(frames.items())))


def read_video_dataset(root: str | os.PathLike) -> list[VideoSequence]:
    """The sequences of a 300-VW-layout folder, sorted by name.

    Raises:
        CunetError: the folder is missing or holds no `NNN/annot/` sequence.
    """
    root = Path(root)
    if not root.is_dir():
        raise CunetError(f"{root}: dataset folder does not exist")
    found = [s for f in sorted(root.iterdir(), key=lambda f: _natural_key(f.name))
             if f.is_dir() and not f.name.startswith(".") and (s := _sequence(f, root)) is not None]
    if not found:
        raise CunetError(f"{root}: not a 300-VW video dataset (expected NNN/vid.avi and NNN/annot/000001.pts)")
    return found


def is_video_dataset(root: str | os.PathLike) -> bool:
    """True for a folder in the 300-VW layout: a subfolder with `annot/*.pts` beside a video file."""
    root = Path(root)
    if not root.is_dir():
        return False
    for f in root.iterdir():
        if f.is_dir() and (f / "annot").is_dir() and any(is_video_file(v) for v in f.iterdir() if v.is_file()):
            return True
    return False
