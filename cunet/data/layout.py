"""Which layout a dataset path has, and the split/subset parts it holds: the one detector every command uses.

`cunet data check`, `evaluate`, `metrics`, `calibrate`, `bench` and `train` all call `detect_layout`, so a folder
one of them accepts is accepted by all, and each part carries the same name everywhere ("train", "test",
"test/common", "test/300w-private/indoor", ...). Faces:

- "300w": the 300-W download (`lfpw/`, `helen/`, `afw/`, `ibug/`, and the private test set in `300W/01_Indoor`,
  `300W/02_Outdoor` or `01_Indoor`, `02_Outdoor` in the root). Test subsets "common" and "challenging" (their union
  is "full", as in the literature) and "300w-private/indoor", "300w-private/outdoor" (their union is
  "300w-private", its own benchmark: used when asked for, or when it is the only test set in the folder).
- "splits": `train/` and `test/` folders; `test/<subset>/` subfolders are subsets, "full" is all of `test/`.
- "flat": a folder with images and `.pts` files at its top level (how 300-W's `afw`, `ibug`, `helen/testset` come):
  a dataset of one split, the "all" part, that serves whichever split a command reads.
- "coco": a COCO-keypoint JSON file (68 x, y, v keypoints and a `bbox` per face, as MMPose ships 300-W), images
  beside it, in `images/` beside it, or in `../images/` (MMPose's `annotations/` + `images/`): one split, named
  "train" or "test" after the file name (or by `--split`).

Pose: "mpii", `train.json` / `valid.json` in the root or in `annot/`; "mpii-json", one MPII JSON file given
directly, images beside it or in `images/` beside it: one split, named after the file name like a COCO file.

Keys never leave their root: every path a dataset file names (a COCO `file_name`, an MPII `image`, a box-file key)
and every file found by walking a folder is resolved by `resolve_key`, which refuses an absolute key, a `..` part
and a symlink leading out of the root, in one line naming the file and the key. So no command reads, or writes
predictions at, a path outside the dataset a user gave.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from cunet.errors import CunetError
from cunet.limits import FileProblem

__all__ = [
    "IMAGE_SUFFIXES",
    "ONE_SPLIT",
    "PRIVATE",
    "FULL",
    "Layout",
    "detect_layout",
    "split_from_name",
    "pose_json",
    "key_text_problem",
    "key_problem",
    "resolve_key",
    "find_key_file",
]

#: Every image suffix cunet reads (any case): the formats OpenCV decodes in every build.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".ppm", ".pgm", ".pbm", ".pnm", ".tif", ".tiff", ".webp")
#: The part name of a one-split dataset (a flat folder, or a COCO file whose name names no split).
ONE_SPLIT = "all"
#: The 300-W private test set's subset name; its folders are the subsets PRIVATE + "/indoor" and "/outdoor".
PRIVATE = "300w-private"
#: The 300-W "full" test set: common + challenging.
FULL = "full"

#: 300-W download folders → (split, subset).
PARTS_300W: tuple[tuple[str, str, str | None], ...] = (
    ("lfpw/trainset", "train", None),
    ("helen/trainset", "train", None),
    ("afw", "train", None),
    ("lfpw/testset", "test", "common"),
    ("helen/testset", "test", "common"),
    ("ibug", "test", "challenging"),
    ("300W/01_Indoor", "test", f"{PRIVATE}/indoor"),
    ("300W/02_Outdoor", "test", f"{PRIVATE}/outdoor"),
    ("01_Indoor", "test", f"{PRIVATE}/indoor"),
    ("02_Outdoor", "test", f"{PRIVATE}/outdoor"),
)
FULL_300W = ("common", "challenging")
POSE_FILES = {"train": "train.json", "test": "valid.json"}
#: Layouts of one split (`Layout.one_split`).
ONE_SPLIT_KINDS = ("flat", "coco", "mpii-json")
_FACE_LAYOUTS = (
    "train/ and test/ folders, the 300-W layout (lfpw/ helen/ afw/ ibug/ 300W/), a folder of images with .pts "
    "files, or a COCO-keypoint .json"
)


@dataclass(frozen=True)
class Layout:
    """A recognised dataset path.

    Attributes:
        kind: "300w", "splits", "flat", "coco" (faces) or "mpii", "mpii-json" (pose).
        root: the path given (a folder, or the COCO / MPII JSON file).
        parts: the (split, subset) parts that hold every annotated file, each file in one part; one-split
            datasets have the single part (split, None) with split "all", "train" or "test".
    """

    kind: str
    root: Path
    parts: tuple[tuple[str, str | None], ...]

    @property
    def one_split(self) -> bool:
        """True for a flat folder, a COCO file or an MPII JSON file: one split that serves every split a command
        asks for."""
        return self.kind in ONE_SPLIT_KINDS

    def test_subsets(self) -> list[str]:
        """The test subsets found, in the order of the literature (300-W) or sorted (test/ subfolders)."""
        return [s for sp, s in self.parts if sp == "test" and s is not None]

    def default_subset(self) -> str | None:
        """The test set scored when no subset is asked for: 300-W's "full", or the private set when it is alone."""
        if self.kind != "300w":
            return None
        subsets = self.test_subsets()
        if any(s in FULL_300W for s in subsets) or not any(s.startswith(PRIVATE) for s in subsets):
            return FULL
        return PRIVATE

    def selection_label(self, subset: str | None) -> str:
        """The row label of the whole selection: "full", "300w-private", a subset name, or the one split's name
        ("all", or "test"/"train" for a file named so): the same name `cunet data check` gives the part."""
        if self.one_split:
            return self.parts[0][0]
        if subset in (None, FULL):
            return self.default_subset() or FULL
        return subset

    def part_name(self, split: str, subset: str | None) -> str:
        """"train", "test", "all", "test/common", "test/300w-private/indoor", ..."""
        return split if subset is None else f"{split}/{subset}"


def split_from_name(name: str) -> str | None:
    """"train" or "test" when a file name says which (valid/val count as test), else None."""
    words = name.lower().replace("-", "_").replace(".", "_").split("_")
    if "train" in words or "trainset" in words:
        return "train"
    if any(w in words for w in ("test", "testset", "valid", "val")):
        return "test"
    return None


def _is_300w(root: Path) -> bool:
    return any((root / d).is_dir() for d, _, _ in PARTS_300W)


def _has_top_level_pts(root: Path) -> bool:
    with os.scandir(root) as it:
        return any(e.is_file() and e.name.lower().endswith(".pts") and not e.name.startswith(".") for e in it)


def pose_json(root: str | os.PathLike, split: str) -> Path | None:
    """The MPII JSON of a split ("train", or "test"/"valid": `valid.json`), in the root or in `annot/`, or None."""
    root = Path(root)
    split = "test" if split == "valid" else split
    for candidate in (root / POSE_FILES[split], root / "annot" / POSE_FILES[split]):
        if candidate.is_file():
            return candidate
    return None


def key_text_problem(key: str) -> str | None:
    """Why `key` cannot be a relative path inside a folder, whatever the folder: empty, absolute (POSIX `/x.png`,
    Windows `C:\\x.png` or `\\\\server\\x.png`) or holding a `..` part (either separator); None when it can."""
    text = str(key)
    if not text.strip():
        return "is empty"
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).anchor:
        return "is an absolute path; keys are relative to the dataset folder"
    if ".." in text.replace("\\", "/").split("/"):
        return "has a '..' part; keys may not leave the dataset folder"
    return None


def key_problem(root: str | os.PathLike, key: str) -> str | None:
    """Why the dataset-relative `key` may not be used under `root`, or None when `root / key` stays inside it:
    `key_text_problem`, or a path that leaves `root` once symlinks are followed (`root` itself may be a symlink)."""
    lexical = key_text_problem(key)
    if lexical is not None:
        return lexical
    base = Path(root).resolve()
    target = (base / str(key)).resolve()
    if target != base and base not in target.parents:
        return f"leads out of the dataset folder {root} (to {target}, through a symlink)"
    return None


def resolve_key(root: str | os.PathLike, key: str, source: str | os.PathLike, what: str = "key") -> Path:
    """`root / key`, after checking that it stays inside `root` (`key_problem`).

    Args:
        root: the folder the key is relative to (the dataset root, or the folder a COCO/MPII file's images are in).
        key: the relative path as the file (or the folder walk) gives it.
        source: the file that names the key (the JSON, the box file, or the walked file itself): named in the error.
        what: how the message calls the key ("image 'a.png'", "annotation 3: file_name", ...).

    Raises:
        FileProblem: one line, "SOURCE: WHAT 'KEY' is an absolute path; ..." (a `CunetError`).
    """
    problem = key_problem(root, key)
    if problem is not None:
        raise FileProblem(source, f"{what} {str(key)!r} {problem}")
    return Path(root) / key


def find_key_file(bases: tuple[Path, ...] | list[Path], key: str, source: str | os.PathLike,
                  what: str = "key") -> Path | None:
    """The first existing file `base / key` over `bases` (a COCO image beside its JSON, in `images/`, ...), checked
    like `resolve_key` against the base it was found in; None when no base holds it.

    Raises:
        FileProblem: the key is absolute or has a `..` part, or the file found leads out of its base.
    """
    for base in bases:
        if resolve_key(base, key, source, what).is_file():
            return Path(base) / key
    return None


def detect_layout(path: str | os.PathLike, task: str, split: str | None = None) -> Layout:
    """Recognise a dataset path (layouts in the module docstring).

    Args:
        path: a dataset folder, or a COCO-keypoint JSON file (faces) or an MPII JSON file (pose).
        task: "face" or "pose".
        split: the split a one-split dataset is named by, when given ("train" or "test"; `--split`); None names a
            COCO or MPII file after its file name and a flat folder "all".

    Raises:
        CunetError: a missing path, or one that is not a dataset of the task (the message lists the layouts).
    """
    root = Path(path)
    if split is not None and split not in ("train", "test", "valid", ONE_SPLIT):
        raise CunetError(f"unknown split {split!r}: choose train or test")
    named = "test" if split == "valid" else split
    if task == "pose":
        if root.is_file():
            if root.suffix.lower() != ".json":
                raise CunetError(f"{root}: not a pose dataset (expected a folder with train.json / valid.json, or "
                                 "an MPII .json file)")
            return Layout("mpii-json", root, ((named or split_from_name(root.stem) or ONE_SPLIT, None),))
        if not root.is_dir():
            raise CunetError(f"{root}: dataset folder does not exist")
        parts = tuple((s, None) for s in POSE_FILES if pose_json(root, s) is not None)
        if not parts:
            raise CunetError(f"{root}: not a pose dataset (expected train.json / valid.json)")
        return Layout("mpii", root, parts)
    if task != "face":
        raise CunetError(f"unknown task {task!r}: choose face or pose")
    if root.is_file():
        if root.suffix.lower() != ".json":
            raise CunetError(f"{root}: not a face dataset (expected {_FACE_LAYOUTS})")
        return Layout("coco", root, ((named or split_from_name(root.stem) or ONE_SPLIT, None),))
    if not root.is_dir():
        raise CunetError(f"{root}: dataset folder does not exist")
    if _is_300w(root):
        found = [s for d, sp, s in PARTS_300W if sp == "test" and (root / d).is_dir()]
        train = any((root / d).is_dir() for d, sp, _ in PARTS_300W if sp == "train")
        parts = ((("train", None),) if train else ()) + tuple(("test", s) for s in dict.fromkeys(found))
        return Layout("300w", root, parts)
    if (root / "train").is_dir() or (root / "test").is_dir():
        parts = tuple((s, None) for s in ("train", "test") if (root / s).is_dir())
        return Layout("splits", root, parts)
    if _has_top_level_pts(root):
        return Layout("flat", root, ((named or ONE_SPLIT, None),))
    raise CunetError(f"{root}: not a face dataset (expected {_FACE_LAYOUTS})")
