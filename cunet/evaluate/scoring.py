"""Score predictions stored in the dataset formats against ground truth, producing the metric JSON of `cunet metrics`.

Predictions use the same formats as the data, so any model's output can be scored (`cunet metrics`):

- Faces: a folder of 300-W `.pts` files. `gt_root` is a dataset in any layout of `cunet.data.layout` (its test
  split is scored, with its subsets; a COCO face JSON is one split) or any folder of `.pts` files (every one is
  scored, no subsets). A prediction lives at the ground truth's path relative to the dataset root (image suffix
  replaced by `.pts`).
- Pose: an MPII JSON (a list of person records). `gt` is that JSON or a dataset root (its "test" split file); the
  prediction is a JSON with the same records in the same order (matched by index, the image checked), or a folder
  holding a JSON of the same file name as the ground truth's. Head boxes come from the records or a `gt_valid.mat`.

The rule of every batch in cunet: what matches is scored; every ground-truth file (or record) without a prediction
is listed in `missing`, every unusable one (an unreadable or 19-point prediction, a bad ground-truth file) in `bad`
with its problem, prediction files outside the scored set are counted in `ignored`; one bad file never fails the
run. `cunet metrics` exits 1 when `missing` or `bad` is non-empty.

The numbers come from `cunet.evaluate.summaries` (the policy tables, the units of the JSON keys, non-finite
predictions as failures, the MPII columns and PCKh styles), which this module re-exports for its callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cunet.errors import CunetError
from cunet.evaluate.summaries import (FACE_THRESHOLDS, MPII_EXCLUDED, MPII_GROUPS, MPII_HEADLINE, MPII_JOINTS, NORMS,
                                      ORIGINAL_JOINTS, PCKH_STYLES, joint_correct, norm_function, per_image_nme,
                                      pckh, pckh_mean, summarize_face, summarize_pose)

__all__ = [
    "NORMS",
    "POSE_SPLIT_FILES",
    "MPII_JOINTS",
    "MPII_EXCLUDED",
    "MPII_HEADLINE",
    "MPII_GROUPS",
    "ORIGINAL_JOINTS",
    "PCKH_STYLES",
    "FACE_THRESHOLDS",
    "pckh_mean",
    "pckh",
    "FaceErrors",
    "per_image_nme",
    "face_errors",
    "summarize_face",
    "summarize_pose",
    "score_face",
    "score_pose",
    "load_pose_gt",
    "pckh_needs_headboxes",
    "batch_keys",
    "joint_correct",
]

#: The file of a pose dataset root that holds each split (train.json and valid.json, as `cunet.data.dataset` has).
POSE_SPLIT_FILES = {"train": "train.json", "test": "valid.json", "valid": "valid.json"}
_FULL = "full"
_MAX_NAMED = 3
PRIVATE = "300w-private"


def batch_keys(missing, bad, ignored: int) -> dict:
    """The batch-semantics keys of a metric JSON: "missing" [file], "bad" [{file, problem}], "ignored" (count), and
    "skipped" [{file, problem}]: the batch rule's list of every command (`cunet.batch`), the bad files then the
    missing ones ("no prediction")."""
    bad = [{"file": f, "problem": p} for f, p in bad]
    skipped = bad + [{"file": f, "problem": "no prediction"} for f in missing]
    return {"missing": list(missing), "bad": bad, "ignored": int(ignored), "skipped": skipped}


@dataclass(frozen=True)
class FaceErrors:
    """Per-image normalised errors of a face prediction set.

    Attributes:
        keys: [N] relative paths of the ground-truth images (or `.pts` files), sorted.
        errors: [N] per-image NME as fractions of the normaliser.
        subsets: [N] test subset of each image ("common", "challenging", ...) or None.
        norm: name of the normaliser (a key of `NORMS`).
        missing: ground-truth files without a prediction file.
        bad: (file, problem) of every prediction or ground-truth file that could not be scored.
        ignored: prediction files that belong to no scored ground truth (another split or subset, or none).
        label: the name of the whole scored set ("full", "300w-private", "common", "all", ...).
    """

    keys: tuple[str, ...]
    errors: np.ndarray
    subsets: tuple[str | None, ...]
    norm: str
    missing: tuple[str, ...] = ()
    bad: tuple[tuple[str, str], ...] = ()
    ignored: int = 0
    label: str = _FULL

    def summary(self) -> dict:
        """`summarize_face` of the scored images plus "subset", "missing", "bad" [{file, problem}], "ignored"."""
        breakdown = self.label in (_FULL, PRIVATE)
        out = summarize_face(self.errors, self.subsets if breakdown else None, self.norm, total=self.label)
        return {**out, **batch_keys(self.missing, self.bad, self.ignored)}


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMED])
    return shown + (f" and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")


def _face_layout(root: Path):
    from cunet.data.layout import detect_layout

    try:
        layout = detect_layout(root, "face")
    except CunetError:  # not a dataset layout: a plain folder of .pts files
        return None
    return layout if layout.kind != "flat" and (layout.one_split or any(s == "test" for s, _ in layout.parts)) else None


@dataclass
class _Truth:
    rels: list[str]  # prediction paths relative to the prediction folder
    files: list[str]  # the ground-truth file of each (named in messages)
    points: list[np.ndarray]
    masks: list[np.ndarray]
    subsets: list[str | None]
    bad: list[tuple[str, str]]
    label: str


def _face_gt(gt_root: Path, subset: str | None) -> _Truth:
    from cunet.data.dataset import load_samples
    from cunet.data.formats import FormatError, read_pts
    from cunet.data.layout import key_problem

    layout = _face_layout(gt_root)
    if layout is not None:
        loaded = load_samples(gt_root, "face", "test", subset, allow_empty=True, layout=layout)
        samples = sorted(loaded.samples, key=lambda s: s.key)
        # the annotation of each sample, named in the lines: its .pts, or the COCO file and the image's entry
        files = ([f"{gt_root} ({s.key})" for s in samples] if layout.kind == "coco"
                 else [str((gt_root / s.key).with_suffix(".pts")) for s in samples])
        return _Truth([Path(s.key).with_suffix(".pts").as_posix() for s in samples], files, [s.points for s in samples],
                      [s.visible for s in samples], [s.subset for s in samples],
                      [(p.file, p.problem) for p in loaded.problems], layout.selection_label(subset))
    if subset is not None:
        raise CunetError(f"{gt_root}: a subset needs a dataset root (with test/ or the 300-W folders)")
    files = sorted(gt_root.rglob("*.pts"))
    if not files:
        raise CunetError(f"{gt_root}: no .pts files and not a dataset root")
    truth = _Truth([], [], [], [], [], [], "all")  # every file of the folder, the name of a one-split dataset
    for f in files:
        escape = key_problem(gt_root, f.relative_to(gt_root).as_posix())
        if escape is not None:  # a symlink out of the ground-truth folder
            truth.bad.append((str(f), escape))
            continue
        try:
            p = read_pts(f)
        except FormatError as e:
            truth.bad.append((e.file, e.problem))
            continue
        truth.rels.append(f.relative_to(gt_root).as_posix())
        truth.files.append(str(f))
        truth.points.append(p)
        truth.masks.append(np.isfinite(p).all(axis=1))
        truth.subsets.append(None)
    return truth


def face_errors(gt_root: str | Path, pred_root: str | Path, norm: str = "inter-ocular",
                subset: str | None = None) -> FaceErrors:
    """Read ground truth and predictions and compute the normalised error of every image that can be scored.

    Args:
        gt_root: a face dataset (any layout; its test split is scored) or a folder of `.pts` files.
        pred_root: folder of predicted `.pts` files at the ground truth's relative paths.
        norm: "inter-ocular" (300-W), "inter-pupil" or "box" (sqrt(w * h) of the ground-truth landmark box).
        subset: score only this test subset (dataset roots only; None: the layout's default test set).

    Returns:
        The per-image errors of what matched, and the missing, bad and ignored files (module docstring).

    Raises:
        CunetError: missing folders, an unknown normaliser or subset, or nothing at all to score.
    """
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    norm_fn = norm_function(norm)  # an unknown normaliser fails before any file is read
    if not gt_root.exists():
        raise CunetError(f"{gt_root}: ground-truth folder not found")
    if not pred_root.is_dir():
        raise CunetError(f"{pred_root}: prediction folder not found")
    from cunet.data.formats import FormatError, read_pts
    from cunet.data.layout import key_problem

    truth = _face_gt(gt_root, subset)
    have = {f.relative_to(pred_root).as_posix() for f in pred_root.rglob("*.pts")}
    wanted = set(truth.rels)
    missing, bad = [], list(truth.bad)
    keep: list[tuple[int, np.ndarray]] = []
    for i, rel in enumerate(truth.rels):
        if rel not in have:
            missing.append(truth.files[i])
            continue
        escape = key_problem(pred_root, rel)
        if escape is not None:  # a symlink out of the prediction folder
            bad.append((str(pred_root / rel), escape))
            continue
        try:
            p = read_pts(pred_root / rel)
        except FormatError as e:
            bad.append((e.file, e.problem))
            continue
        gt = truth.points[i]
        if p.shape != gt.shape:
            bad.append((str(pred_root / rel), f"{len(p)} points but the ground truth {truth.files[i]} has {len(gt)}"))
            continue
        normaliser = float(norm_fn(np.where(truth.masks[i][:, None], gt, np.nan)[None])[0])
        if not (np.isfinite(normaliser) and normaliser > 0):
            bad.append((truth.files[i], f"the {norm} normaliser is {normaliser:g}; it must be a positive finite "
                                        "number"))
            continue
        keep.append((i, p))
    if not keep:
        first = f" (first: {bad[0][0]}: {bad[0][1]})" if bad else (f" (first missing: {missing[0]})" if missing else "")
        raise CunetError(f"{pred_root}: no prediction could be scored against {gt_root}: {len(missing)} missing, "
                         f"{len(bad)} bad{first}")
    if len({len(truth.points[i]) for i, _ in keep}) > 1:
        raise CunetError(f"{gt_root}: ground-truth files have different point counts")
    idx = [i for i, _ in keep]
    errors = per_image_nme(np.stack([p for _, p in keep]), np.stack([truth.points[i] for i in idx]),
                           np.stack([truth.masks[i] for i in idx]), norm, [truth.files[i] for i in idx])
    return FaceErrors(tuple(truth.rels[i] for i in idx), errors, tuple(truth.subsets[i] for i in idx), norm,
                      tuple(missing), tuple(bad), len(have - wanted), truth.label)


def score_face(gt_root: str | Path, pred_root: str | Path, norm: str = "inter-ocular",
               subset: str | None = None) -> dict:
    """Score a folder of predicted `.pts` files against ground truth (see `face_errors` and `summarize_face`).

    The `subsets` breakdown is reported when the whole test split is scored and it has subsets.
    """
    return face_errors(gt_root, pred_root, norm, subset).summary()


def load_pose_gt(gt: str | Path, split: str = "test", headboxes: str | Path | None = None,
                 strict: bool = True) -> tuple[Path, list]:
    """The ground-truth JSON file and its records: `gt` is an MPII JSON or a pose dataset root (then the split's
    file: `valid.json` for "test"/"valid", `train.json` for "train", in the root or in `annot/`).

    With a `gt_valid.mat` (`headboxes`, or when None the one beside the JSON) every record takes its head box,
    joints and annotation mask from it, as the official evaluation does: `jnt_missing` decides which joints are
    scored, not the JSON's `joints_vis` (the two are known to differ on a few joints). The `.mat` must describe the
    same records in the same order (`cunet.data.mpii_mat.attach_headboxes`). Without one, records keep their own
    "headbox" and `joints_vis`. With `strict` the first record that does not parse raises its
    `FormatError`; without, it stays in the list in its place.
    """
    import dataclasses

    from cunet.data.formats import FormatError, parse_mpii_json
    from cunet.data.mpii_mat import attach_headboxes, find_headbox_file, read_gt_mat

    gt = Path(gt)
    if gt.is_dir():
        name = POSE_SPLIT_FILES.get(split)
        if name is None:
            raise CunetError(f"unknown split {split!r}: choose one of {', '.join(POSE_SPLIT_FILES)}")
        candidates = (gt / name, gt / "annot" / name)  # the layouts `load_samples` accepts
        gt = next((c for c in candidates if c.is_file()), candidates[0])
    if not gt.is_file():
        raise CunetError(f"{gt}: ground-truth JSON not found")
    records = parse_mpii_json(gt)
    mat_file = Path(headboxes) if headboxes is not None else find_headbox_file(gt)
    if mat_file is not None:
        joints = [None if isinstance(r, FormatError) else r.joints for r in records]
        mat = read_gt_mat(mat_file)
        boxes = attach_headboxes(joints, mat, gt, mat_file)
        records = [r if isinstance(r, FormatError) else dataclasses.replace(
            r, headbox=b, joints=mat.joints[i], visible=np.isfinite(mat.joints[i]).all(axis=1))
            for i, (r, b) in enumerate(zip(records, boxes))]
    if strict:
        for r in records:
            if isinstance(r, FormatError):
                raise r
    return gt, records


def pckh_needs_headboxes(gt_file: Path, records: list) -> None:
    """Raise, with the fix, when a ground-truth record has no head box (PCKh is measured in head sizes)."""
    from cunet.data.formats import FormatError

    lacking = [i for i, r in enumerate(records) if not isinstance(r, FormatError) and r.headbox is None]
    if lacking:
        raise CunetError(f"{gt_file}: {len(lacking)} record(s) have no headbox (first: record {lacking[0]}); PCKh "
                         "needs head boxes: put MPII's gt_valid.mat beside it or pass --headboxes FILE")


def score_pose(gt_json: str | Path, pred_json: str | Path, headboxes: str | Path | None = None,
               style: str = "mpii") -> dict:
    """Score an MPII JSON of predictions against ground truth (see the module docstring for the matching rules).

    Records are matched by index: a ground-truth record beyond the prediction's last is missing; a record that
    does not parse (in either file) or whose image differs is bad; extra prediction records are ignored.
    `style` picks the headline (`PCKH_STYLES`).

    Returns:
        `summarize_pose` of the matched records plus "missing" ["file record i"], "bad" [{file, problem}],
        "ignored".

    Raises:
        CunetError: unreadable files, no head boxes for PCKh, nothing that could be scored.
    """
    from cunet.data.formats import FormatError, parse_mpii_json

    gt_file, gt_records = load_pose_gt(gt_json, headboxes=headboxes, strict=False)
    pckh_needs_headboxes(gt_file, gt_records)
    pred_file = Path(pred_json)
    if pred_file.is_dir():
        pred_file = pred_file / gt_file.name
    if not pred_file.is_file():
        raise CunetError(f"{pred_file}: prediction JSON not found")
    pred_records = parse_mpii_json(pred_file)
    missing = [f"{gt_file} record {i}" for i in range(len(pred_records), len(gt_records))]
    bad: list[tuple[str, str]] = []
    keep = []
    for i, (p, g) in enumerate(zip(pred_records, gt_records)):
        for r in (g, p):
            if isinstance(r, FormatError):
                bad.append((r.file, r.problem))
        if isinstance(p, FormatError) or isinstance(g, FormatError):
            continue
        if Path(p.image).as_posix() != Path(g.image).as_posix():
            bad.append((str(pred_file), f"record {i} is for image {p.image!r}, the ground truth's for {g.image!r}"))
            continue
        keep.append((p, g))
    if not keep:
        raise CunetError(f"{pred_file}: no record could be scored against {gt_file}: {len(missing)} missing, "
                         f"{len(bad)} bad")
    result = summarize_pose(
        np.stack([p.joints for p, _ in keep]),
        np.stack([g.joints for _, g in keep]),
        np.stack([g.visible for _, g in keep]),
        np.stack([np.asarray(g.headbox, dtype=np.float64) for _, g in keep]),
        style,
    )
    return {**result, **batch_keys(missing, bad, max(0, len(pred_records) - len(gt_records)))}
