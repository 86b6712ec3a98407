"""What a training run is: the recipes (per-variant defaults), `TrainOptions`, `TrainResult` and how options are
resolved for a new run or a resumed one. `cunet.train.trainer` re-exports these names."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cunet.errors import CunetError

__all__ = ["OPTIMIZERS", "LOW_BIT_CONV_LR_SCALE", "AMP_MODES", "RUN_FIELDS", "SOURCE_FIELDS", "INHERITED",
           "DEFAULT_DISTILL_WEIGHT", "Recipe", "DEFAULT_RECIPE", "RECIPES", "TrainOptions",
           "TrainResult", "resolve_options"]

OPTIMIZERS = ("rmsprop", "adam")
#: Default `conv_lr_scale` for 1- and 2-bit weights. Measured on cunet-tiny, 300 synthetic faces, 10 epochs,
#: w1a8g8, seed 0, one thread: NME 7.74 % at 1x, 4.89 % at 10x, 5.00 % at 20x; 30x trained unstably.
LOW_BIT_CONV_LR_SCALE = 10.0
AMP_MODES = ("auto", "bf16", "fp16", "off")
#: Options that define what a run is. On `resume` they must equal the run's own (None means "the run's value").
RUN_FIELDS = ("variant", "sigma", "optimizer", "lr", "batch_size", "milestones", "gamma", "weight_decay", "seed",
              "quant_delay", "conv_lr_scale", "distill_weight", "bn_reestimate")
#: Options naming a file the run starts from; a checkpoint records each one's sha256 (`cunet.train.sources`), and
#: resuming with another file is refused.
SOURCE_FIELDS = ("init", "teacher")
#: `distill_weight` when a teacher is given: the share of the loss that pulls toward the teacher's heatmaps.
DEFAULT_DISTILL_WEIGHT = 0.5
#: Options a resumed run takes from the run when left as None, but which may change (a run can be extended).
INHERITED = ("epochs",)


# ------------------------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class Recipe:
    """Default training hyper-parameters of a variant (any `TrainOptions` field left as None takes these).

    Attributes:
        epochs: passes over the training split.
        batch_size: images per optimiser step, summed over all DDP processes.
        lr: initial learning rate.
        optimizer: "rmsprop" or "adam".
        sigma_64: target Gaussian sigma in pixels of a 64² heatmap, scaled with the heatmap size (so an
            `input_size` override keeps the same blob relative to the face).
        milestones: the learning rate is multiplied by `gamma` when these fractions of `epochs` are done.
        gamma: the step factor (the original's 0.2).
        weight_decay: L2 penalty of the optimiser.
        conv_lr_scale: lr multiplier of the inner convs' weights (`TrainOptions.conv_lr_scale`).
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    sigma_64: float
    milestones: tuple[float, ...]
    gamma: float = 0.2
    weight_decay: float = 0.0
    conv_lr_scale: float = 1.0


#: The original CU-Net face training: RMSprop lr 2.5e-4, batch 24, sigma 2 at 64², lr x0.2 at 30/100, 60/100 and
#: 90/100 of the epochs.
DEFAULT_RECIPE = Recipe(epochs=100, batch_size=24, lr=2.5e-4, optimizer="rmsprop", sigma_64=2.0,
                        milestones=(0.3, 0.6, 0.9))
#: cunet-tiny (128² input, 32² heatmaps) on 2 CPU cores, tuned on `cunet data synth --task face --n 600`: Adam at
#: 2e-3 converges in far fewer steps than the paper's RMSprop 2.5e-4, and a wider target (sigma 1.5 at 32² instead
#: of 1.0) gives the first epochs a stronger signal (test NME 8.3 % vs 10.2 % after 3 epochs, both ~2.6 % after 15).
#: 15 epochs of 480 images fit in about 5 minutes on 2 idle cores; lr x0.2 for the last quarter. The inner convs
#: train at 10x lr (their outputs all feed BatchNorm, so only the pace of change grows): on 300 synthetic faces,
#: 10 epochs, seeds 0-2, face NME 5.60 → 3.52 % (mean; every seed better); 300 synthetic poses, 10 epochs, seed 0,
#: PCKh@0.5 65.4 → 76.5 %.
_TINY = Recipe(epochs=15, batch_size=16, lr=2e-3, optimizer="adam", sigma_64=3.0, milestones=(0.75,),
               conv_lr_scale=10.0)
RECIPES: dict[str, Recipe] = {"cunet-tiny": _TINY, "cunet-tiny-pose": _TINY}


@dataclass(frozen=True)
class TrainOptions:
    """Everything `train` needs; what the CLI flags build. None means "the variant's recipe" (`RECIPES`) for a new
    run and "the run's own value" when resuming.

    Attributes:
        task: "face" (NME validation) or "pose" (PCKh@0.5 validation).
        data: dataset (any `cunet.data.layout` layout); its "train" split trains, its "test" split validates.
        val_data: a second dataset whose "test" split validates instead (needed when `data` is a one-split flat
            folder or COCO file; None: `data`'s own test split).
        out: run folder: last.pt, best.pt, log.csv, history.json.
        variant: a `cunet.model.VARIANTS` name (None: cunet-tiny / cunet-tiny-pose by task). The task's landmark
            count replaces the variant's, so any variant trains for either task.
        epochs, batch_size, lr, optimizer, milestones, gamma, weight_decay: see `Recipe` (milestones here are
            epoch numbers: the lr drops after that many epochs).
        sigma: target Gaussian sigma in heatmap pixels (None: the recipe's `sigma_64` scaled to the heatmap);
            recorded in the checkpoint, where the DARK decoder of every runtime reads it.
        resume: continue the run in `out` from last.pt (a finished run returns at once).
        seed: seeds the model init, the batch order and every augmentation.
        workers: DataLoader worker processes (0: load in the training process; 0 and 1 measured the same on 2 cores).
        overrides: `CUNetConfig` fields replacing the variant's, e.g. {"layers": 2, "input_size": 128}.
        bits_w, bits_a, bits_g: low-bit quantization-aware training of weights / conv inputs / weight gradients
            (`cunet.model.quant`); None keeps that part full precision.
        quant_delay: low-bit runs only: train this many epochs in full precision before the quantizers switch on
            (TensorFlow's `quant_delay`, in epochs): the binary/ternary weights then start from trained weights
            instead of a random init, within the same number of epochs. Calibrated input ranges are learnt during
            the warm-up; best.pt is chosen among quantized epochs only. None: 0. Measured on cunet-tiny, 300
            synthetic faces, 10 epochs, w1a8g8 at the default 10x inner-conv lr, seeds 0-2: NME 4.49 % with 5
            warm-up epochs vs 4.94 % without (every seed better; FP32 3.52 %). At 1x lr it made no difference
            (8.30 vs 8.22 %, seed 0, with binary intermediate heads).
        conv_lr_scale: the weights of the inner convs (all but the stem's and the heads', `CUNet.edge_convs`; the
            latent weights of a low-bit model) train at this multiple of lr (None: `LOW_BIT_CONV_LR_SCALE` for 1-
            and 2-bit weights, else the recipe's: 10 for cunet-tiny, 1 for the paper's models; see
            `trainer._param_groups` for why).
        init: start from the weights of this cunet checkpoint (same task and CU-Net config; typically a trained
            FP32 run that a low-bit run fine-tunes) instead of a random init; its optimiser and schedule are not
            taken. Its sha256 is recorded in the run's checkpoints (`sources`).
        teacher: distil from this cunet checkpoint (any variant with the same task, input size and heatmap size):
            every supervised head is also trained toward the teacher's last-head heatmaps of the same augmented
            batch (`cunet.train.distill`). Its sha256 is recorded like `init`'s; a resume needs the same file.
        distill_weight: with `teacher`: loss = (1 - w) * MSE(target) + w * MSE(teacher) (None:
            `DEFAULT_DISTILL_WEIGHT`).
        bn_reestimate: after every (quantized) epoch, recompute every BatchNorm's running statistics as the average
            over that epoch's training batches again, the weights frozen (`cunet.train.bn`): they then describe the
            final weights instead of a moving average over weights that kept changing (binary weights flip signs
            until the end). Training itself is unchanged; each epoch costs one more forward pass.
        max_minutes: stop cleanly after the epoch that crosses this wall-clock budget (counted over resumes).
        device: "cpu", "cuda", "cuda:1", ... (None: CUDA when available).
        progress: draw a progress bar and print one line per epoch on stderr.
        amp: mixed precision on CUDA ("auto": bf16 where supported, else fp16); always off on CPU.
        threads: `torch.set_num_threads` for this run (None: leave the process's setting alone).
        strict: stop at the first file of the data that cannot be used, instead of leaving it out (`cunet.batch`;
            the data is checked, every image decoded once, before the first epoch).
    """

    task: str
    data: str | os.PathLike
    out: str | os.PathLike = "run"
    variant: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    resume: bool = False
    seed: int | None = None
    workers: int = 0
    sigma: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    bits_w: int | None = None
    bits_a: int | None = None
    bits_g: int | None = None
    quant_delay: int | None = None
    conv_lr_scale: float | None = None
    init: str | os.PathLike | None = None
    teacher: str | os.PathLike | None = None
    distill_weight: float | None = None
    bn_reestimate: bool | None = None
    max_minutes: float | None = None
    device: str | None = None
    progress: bool = True
    milestones: tuple[int, ...] | None = None
    gamma: float | None = None
    weight_decay: float | None = None
    amp: str = "auto"
    val_data: str | os.PathLike | None = None
    threads: int | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise CunetError(f"invalid training options: {msg}")

        need(self.task in ("face", "pose"), f"task must be 'face' or 'pose', got {self.task!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, int) and v >= 1), f"{name} must be a positive integer, got {v!r}")
        need(self.lr is None or (math.isfinite(self.lr) and self.lr > 0), f"lr must be positive, got {self.lr!r}")
        need(self.optimizer is None or self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        need(self.sigma is None or self.sigma > 0, f"sigma must be positive, got {self.sigma!r}")
        need(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        need(self.max_minutes is None or self.max_minutes > 0, f"max_minutes must be positive, got {self.max_minutes}")
        need(self.gamma is None or 0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma!r}")
        need(self.weight_decay is None or self.weight_decay >= 0, "weight_decay must be >= 0")
        need(self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        need(self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads!r}")
        need(self.milestones is None or all(isinstance(m, int) and m >= 1 for m in self.milestones),
             f"milestones must be positive epoch numbers, got {self.milestones!r}")
        for name in ("bits_w", "bits_a", "bits_g"):
            v = getattr(self, name)
            # The supported widths per part are `cunet.model.quant.QuantConfig`'s to check.
            need(v is None or (isinstance(v, int) and v >= 1), f"{name} must be a positive bit count, got {v!r}")
        need(isinstance(self.overrides, dict), "overrides must be a dict of CUNetConfig fields")
        need(self.quant_delay is None or (isinstance(self.quant_delay, int) and self.quant_delay >= 0),
             f"quant_delay must be a whole number of epochs >= 0, got {self.quant_delay!r}")
        need(self.conv_lr_scale is None or (math.isfinite(self.conv_lr_scale) and self.conv_lr_scale > 0),
             f"conv_lr_scale must be positive, got {self.conv_lr_scale!r}")
        need(self.distill_weight is None or (isinstance(self.distill_weight, (int, float))
                                             and 0 < self.distill_weight <= 1),
             f"distill_weight must be in (0, 1], got {self.distill_weight!r}")

    @property
    def quantized(self) -> bool:
        return any(b is not None for b in (self.bits_w, self.bits_a, self.bits_g))

    def to_dict(self) -> dict[str, Any]:
        """JSON- and `torch.load(weights_only=True)`-friendly dict (paths as strings, tuples as lists)."""
        d = dataclasses.asdict(self)
        d["data"], d["out"] = str(self.data), str(self.out)
        for name in ("val_data", *SOURCE_FIELDS):
            d[name] = None if getattr(self, name) is None else str(getattr(self, name))
        d["milestones"] = None if self.milestones is None else list(self.milestones)
        return d


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or budget-stopped) run produced.

    Attributes:
        best: best.pt, the epoch with the best validation metric.
        last: last.pt, the latest epoch (resume from here).
        history: one dict per epoch: epoch, train_loss, <metric_name>, lr, seconds (the epoch), elapsed (the run).
        best_metric: the best validation value (NME in percent, or PCKh@0.5 in percent).
        metric_name: "nme" (lower is better) or "pckh@0.5" (higher is better).
        seconds: training wall time of the whole run, over all resumes.
        epoch: epochs completed.
        skipped: [{"file", "problem"}] of the data files left out (`cunet.batch`): found before the first epoch.
        train_samples: the training samples used (faces, or people for pose).
    """

    best: Path
    last: Path
    history: list[dict]
    best_metric: float
    metric_name: str
    seconds: float
    epoch: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    train_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["best"], d["last"] = str(self.best), str(self.last)
        return d


def _default_variant(task: str) -> str:
    return "cunet-tiny" if task == "face" else "cunet-tiny-pose"


def resolve_options(opts: TrainOptions, saved: dict[str, Any] | None = None) -> TrainOptions:
    """Fill every None of `opts` from the run being resumed (`saved`, its args) or else from the variant's recipe.

    The result is what `train` runs with (and records as the checkpoint's `args`).

    Raises:
        CunetError: when resuming with a run-defining option (`RUN_FIELDS`) that differs from the run's own.
    """
    if saved is not None:
        differ = []
        for name in RUN_FIELDS:
            mine, theirs = getattr(opts, name), saved.get(name)
            if name == "milestones" and theirs is not None:
                theirs = tuple(theirs)
            if name == "quant_delay" and theirs is None:
                theirs = 0  # a run from before quant_delay existed
            if name == "conv_lr_scale" and theirs is None:
                theirs = 1.0  # a run from before conv_lr_scale existed
            if name == "bn_reestimate" and theirs is None:
                theirs = False  # a run from before BN re-estimation existed
            if mine is not None and mine != theirs:
                differ.append(f"{name} {mine!r} (the run has {theirs!r})")
        if differ:
            raise CunetError(f"{Path(opts.out) / 'last.pt'}: cannot resume with different options: "
                             f"{'; '.join(differ)}. Leave them out, or train into another --out")
        # A source file left out is the run's own (`cunet.train.sources` checks a given one against the run's).
        filled = {n: (tuple(saved[n]) if n == "milestones" else saved[n])
                  for n in (*RUN_FIELDS, *INHERITED, *SOURCE_FIELDS)
                  if getattr(opts, n) is None and saved.get(n) is not None}
        if opts.conv_lr_scale is None and filled.get("conv_lr_scale") is None and "conv_lr_scale" not in saved:
            filled["conv_lr_scale"] = 1.0  # a run from before the option trained every weight at lr
        if not opts.quantized:  # no --bits-* given: a low-bit run resumes low-bit (given ones are checked by train)
            filled.update({b: saved[b] for b in ("bits_w", "bits_a", "bits_g") if saved.get(b) is not None})
        opts = dataclasses.replace(opts, **filled)
    variant = opts.variant or _default_variant(opts.task)
    recipe = RECIPES.get(variant, DEFAULT_RECIPE)
    epochs = opts.epochs if opts.epochs is not None else recipe.epochs
    if opts.quant_delay and not opts.quantized:  # checked here: a resumed run's bits come from the run
        raise CunetError("invalid training options: quant_delay delays quantization: it needs --bits-w, --bits-a or "
                         "--bits-g")
    if opts.quant_delay and opts.quant_delay >= epochs:
        raise CunetError(f"invalid training options: quant_delay ({opts.quant_delay}) must be smaller than epochs "
                         f"({epochs}): the run would never train quantized")
    if opts.distill_weight is not None and opts.teacher is None:
        raise CunetError("invalid training options: distill_weight weighs the teacher's loss: it needs --teacher")
    distill_weight = opts.distill_weight
    if opts.teacher is not None and distill_weight is None:
        distill_weight = DEFAULT_DISTILL_WEIGHT
    milestones = opts.milestones
    if milestones is None:
        milestones = tuple(sorted({max(1, round(f * epochs)) for f in recipe.milestones}))
    return dataclasses.replace(
        opts,
        variant=variant,
        sigma=opts.sigma if opts.sigma is not None else _recipe_sigma(variant, opts.overrides),
        epochs=epochs,
        batch_size=opts.batch_size if opts.batch_size is not None else recipe.batch_size,
        lr=opts.lr if opts.lr is not None else recipe.lr,
        optimizer=opts.optimizer or recipe.optimizer,
        seed=opts.seed if opts.seed is not None else 0,
        milestones=milestones,
        gamma=opts.gamma if opts.gamma is not None else recipe.gamma,
        weight_decay=opts.weight_decay if opts.weight_decay is not None else recipe.weight_decay,
        quant_delay=opts.quant_delay if opts.quant_delay is not None else 0,
        conv_lr_scale=(opts.conv_lr_scale if opts.conv_lr_scale is not None
                       else LOW_BIT_CONV_LR_SCALE if opts.bits_w in (1, 2) else recipe.conv_lr_scale),
        distill_weight=distill_weight,
        bn_reestimate=bool(opts.bn_reestimate),
    )


def _recipe_sigma(variant: str, overrides: dict[str, Any]) -> float:
    """The recipe's target sigma scaled to the run's heatmap size (input size / 4)."""
    from cunet.model.config import HEATMAP_STRIDE, VARIANTS

    base = VARIANTS.get(variant)  # an unknown variant is reported when the model is built
    input_size = overrides.get("input_size", base.input_size if base is not None else 256)
    return RECIPES.get(variant, DEFAULT_RECIPE).sigma_64 * (int(input_size) // HEATMAP_STRIDE) / 64.0
