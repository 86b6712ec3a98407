"""The CU-Net trainer: `train(TrainOptions(...)) -> TrainResult`, the library behind `cunet train`.

Reads top to bottom like `train` below: options (`cunet.train.options`) → device and DDP (`cunet.train.distributed`)
→ data → model (+ optional low-bit QAT) → optimiser and step schedule → resume (RNG state: `cunet.train.rng`)
→ epochs (train, validate, checkpoint, log).

What makes a run reproducible and resumable:
- every random choice of the data comes from (seed, epoch, index) (`LandmarkDataset`) and the batch order from
  (seed, epoch) (`EpochSampler`), never from global state, so an epoch's batches do not depend on the process;
- the model is built right after `torch.manual_seed(seed)`;
- `last.pt` holds the weights, optimiser, schedule, epoch, step, best metric, history and RNG states after every
  epoch. A run killed at any moment resumes from the last finished epoch and ends with the same weights as a run
  that was never interrupted (bit-identical on CPU with the same thread count; tests/train/test_resume.py).

Checkpoints and logs are written through `cunet.io` (temporary file + rename): `best.pt` before `last.pt`, so a
kill between the two never leaves a `last.pt` that claims a best checkpoint that is not on disk.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from cunet.batch import Skips
from cunet.data.spec import Task
from cunet.errors import CunetError
from cunet.train.rng import rng_state, set_rng_state
from cunet.train.distributed import Dist, all_mean, broadcast, init_distributed, run_device
from cunet.train import runlog
from cunet.train.bn import reestimate_bn
from cunet.train.loss import distill_loss, heatmap_loss
from cunet.train.sources import check_sources, load_init
from cunet.train.options import (  # re-exported: the trainer's API keeps these names
    DEFAULT_RECIPE,
    RECIPES,
    Recipe,
    TrainOptions,
    TrainResult,
    _default_variant,
    resolve_options,
)

__all__ = [
    "RECIPES",
    "DEFAULT_RECIPE",
    "Recipe",
    "TrainOptions",
    "TrainResult",
    "EpochSampler",
    "heatmap_loss",
    "resolve_options",
    "train",
]

# ------------------------------------------------------------------------------------------------- data helpers


class EpochSampler(Sampler[int]):
    """A shuffled order that is a pure function of (seed, epoch), split over DDP ranks.

    Like `DistributedSampler`, each rank takes every `world`-th index of the permutation, padded by repeating its
    head so every rank gets the same number of samples (DDP needs the same number of steps on each rank).
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.n / self.world)

    def __iter__(self) -> Iterator[int]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        total = len(self) * self.world
        perm = np.concatenate([perm, perm[: total - self.n]]) if total > self.n else perm
        return iter(perm[self.rank :: self.world].tolist())


# ------------------------------------------------------------------------------------------------------ helpers


def _amp_dtype(opts: TrainOptions, device: torch.device) -> torch.dtype | None:
    # CPU autocast slows CU-Net's small convolutions down and bf16 BatchNorm statistics lose precision: CUDA only.
    if device.type != "cuda" or opts.amp == "off":
        return None
    if opts.amp == "fp16" or (opts.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def _model_config(opts: TrainOptions, saved_config: dict[str, Any] | None):
    """The CUNetConfig of the run: the variant with the task's landmark count and the overrides.

    When resuming, the overrides apply to the run's own config, so repeating them (or leaving them out) continues
    the same model while any real change shows up as a difference the caller rejects.
    """
    from cunet.data.spec import get_spec
    from cunet.model import CUNetConfig, get_variant

    k = get_spec(opts.task).num_landmarks
    if opts.overrides.get("num_landmarks", k) != k:
        raise CunetError(f"the {opts.task} task has {k} landmarks, not num_landmarks={opts.overrides['num_landmarks']}")
    try:
        if saved_config is not None:
            return dataclasses.replace(CUNetConfig.from_dict(saved_config), **opts.overrides)
        return get_variant(opts.variant or _default_variant(opts.task), **{"num_landmarks": k, **opts.overrides})
    except TypeError as e:  # dataclasses.replace with an unknown field name
        raise CunetError(f"unknown CU-Net config override in {sorted(opts.overrides)}: {e}") from None


def _quant_config(opts: TrainOptions):
    if not opts.quantized:
        return None
    from cunet.model.quant import QuantConfig  # another engineer's module; only needed for low-bit runs

    return QuantConfig(bits_w=opts.bits_w, bits_a=opts.bits_a, bits_g=opts.bits_g)


def _param_groups(opts: TrainOptions, model: torch.nn.Module) -> list[dict[str, Any]]:
    """One group, or two when the inner convs' weights (`CUNet.edge_convs`) train at `conv_lr_scale` x lr.

    Adam and RMSprop move every weight by about lr per step whatever the gradient's size, and a binary (ternary)
    weight only changes when its latent value crosses zero (the threshold): at lr 2e-3 a He-initialised latent
    weight of ~0.1 needs ~50 steps of one sign to flip, more than a short run has, so the signs stay near their
    random init. Every inner conv feeds a BatchNorm (directly or through concatenation and pooling), and the
    low-bit quantizers rescale per filter, so a larger step changes no output scale: it makes changes reachable.
    """
    scale = opts.conv_lr_scale if opts.conv_lr_scale is not None else 1.0
    if scale == 1.0:
        return [{"params": list(model.parameters())}]
    edge = model.edge_convs()
    inner = [m.weight for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and name not in edge]
    ids = {id(p) for p in inner}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": inner, "lr": opts.lr * scale}]


def _optimizer(opts: TrainOptions, params) -> torch.optim.Optimizer:
    if opts.optimizer == "adam":
        return torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    # The original's RMSprop: torch defaults (alpha 0.99, eps 1e-8), as the Lua/PyTorch CU-Net code used.
    return torch.optim.RMSprop(params, lr=opts.lr, weight_decay=opts.weight_decay)


def _load_split(opts: TrainOptions, split: str, skips: Skips, log: Callable[[str], None]):
    """The usable samples of a split, checked before the first epoch: every image decoded once, so a truncated one
    is a `skipped` line now (`cunet.batch`) instead of an error mid-epoch, and the start line counts what is used."""
    from cunet.data.dataset import load_samples
    from cunet.data.layout import detect_layout

    root = opts.data if split == "train" or opts.val_data is None else opts.val_data
    if split != "train" and opts.val_data is None and detect_layout(root, opts.task).one_split:
        raise CunetError(f"{root}: a one-split dataset (a flat folder, a COCO or an MPII .json) has no validation "
                         "split; give one with --val-data DIR")
    loaded = load_samples(root, opts.task, split, check_images=True, allow_empty=True)
    before = len(skips)
    seen = {(s.file, s.problem) for s in skips}  # validating on the training folder: its bad files once
    skips.extend(p for p in loaded.problems if (p.file, p.problem) not in seen)
    for s in skips.items[before:]:
        log(s.line())
    if not loaded.samples:
        first = f" (first: {skips.items[before].file}: {skips.items[before].problem})" if len(skips) > before else ""
        raise CunetError(f"{root}: no usable {opts.task} samples in split {split!r}{first}")
    return loaded.samples


def _better(metric_name: str, value: float, best: float | None) -> bool:
    if not math.isfinite(value):
        return False
    if best is None or not math.isfinite(best):
        return True
    return Task.of_metric(metric_name).better(value, best)


# --------------------------------------------------------------------------------------------------- validation


@torch.inference_mode()
def _validate(model, loader: DataLoader, samples: list, task: str, sigma: float, device: torch.device,
              amp: torch.dtype | None) -> float:
    """The task metric of `model` on `samples`, decoded (DARK) and mapped back to the original images.

    The crops, decoder and metric are those of `cunet evaluate`, so best.pt re-evaluates to the same number.
    """
    from cunet.data.decode import decode, heatmap_to_image
    from cunet.data.torch_dataset import HEATMAP_STRIDE
    from cunet.evaluate import scoring

    model.eval()
    pred = np.full((len(samples), samples[0].points.shape[0], 2), np.nan)
    for batch in loader:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            heatmaps = model(batch["image"].to(device, non_blocking=True))
        coords, _ = decode(heatmaps.float().cpu().numpy(), sigma=sigma)
        pred[batch["index"].numpy()] = heatmap_to_image(coords, batch["affine"].numpy(), HEATMAP_STRIDE)
    gt = np.stack([s.points for s in samples])
    mask = np.stack([s.visible for s in samples])
    if task == "face":
        return 100.0 * float(np.mean(scoring.per_image_nme(pred, gt, mask, "inter-ocular", [s.key for s in samples])))
    headboxes = np.stack([s.headbox for s in samples])
    return 100.0 * scoring.pckh(pred, gt, mask, headboxes, thr=0.5).mean


# -------------------------------------------------------------------------------------------------------- train


def train(opts: TrainOptions, on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a CU-Net (or continue one with `opts.resume`) and return where its checkpoints are.

    Args:
        opts: the run's options; None fields come from the variant's recipe (`RECIPES`) or the resumed run.
        on_epoch: called on rank 0 with each epoch's history entry after its checkpoint is on disk.

    Returns:
        The run's checkpoints, per-epoch history and best validation metric.

    Raises:
        CunetError: unusable data, options or run folder (an existing run without `resume`, nothing to resume,
            options that differ from the resumed run's), or a diverged loss.

    Called without a write policy (from Python), it runs under the one `cunet train --out` has (`cunet.io`).
    """
    from cunet.io import Output, WritePolicy, writing

    inputs = [p for p in (opts.data, opts.val_data, opts.init, opts.teacher) if p is not None]
    with writing(WritePolicy([Output(Path(opts.out), "cunet train", "--out", folder=True)], inputs), default=True):
        return _run(opts, on_epoch)


def _run(opts: TrainOptions, on_epoch: Callable[[dict], None] | None) -> TrainResult:
    from cunet.model.checkpoint import load_checkpoint

    # ---- options, run folder and resume state
    out = Path(opts.out)
    last_path = out / "last.pt"
    saved = None
    if opts.resume:
        if not last_path.is_file():
            raise CunetError(f"{last_path}: nothing to resume (train without --resume to start this run)")
        saved = load_checkpoint(last_path)
        if saved.get("task") != opts.task:
            raise CunetError(f"{last_path}: the run trains task {saved.get('task')!r}, not {opts.task!r}")
    elif last_path.exists():
        raise CunetError(f"{out}: already holds a run (last.pt); pass --resume to continue it or choose another --out")
    run = resolve_options(opts, saved.get("args") if saved else None)
    cfg = _model_config(run, saved["config"] if saved else None)
    if saved is not None and cfg.to_dict() != saved["config"]:
        differ = [f"{k} {v!r} (the run has {saved['config'].get(k)!r})" for k, v in cfg.to_dict().items()
                  if saved["config"].get(k) != v]
        raise CunetError(f"{last_path}: cannot resume with a different model: {'; '.join(differ)}")
    quant_cfg = _quant_config(run)
    quant = quant_cfg.to_dict() if quant_cfg is not None else None
    if saved is not None and saved.get("quant") != quant:
        raise CunetError(f"{last_path}: cannot resume with different low-bit settings "
                         f"{quant} (the run has {saved.get('quant')})")
    sources = check_sources(opts, run, saved)

    from cunet.io import adopt, check_writable

    run_files = [last_path, out / "best.pt", *runlog.log_files(out)]
    if saved is not None:  # the run whose last.pt was just validated is this run folder's own, manifest or not
        adopt(run_files)
    check_writable(run_files)  # before the first epoch, not after it

    # ---- device, threads, DDP
    threads_before = torch.get_num_threads()
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    device = run_device(run, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    d = init_distributed(device.type)
    try:
        return _train(run, cfg, quant_cfg, saved, sources, device, d, on_epoch)
    finally:
        torch.set_num_threads(threads_before)  # the thread count is the caller's process-wide setting
        if d.started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(run: TrainOptions, cfg, quant_cfg, saved: dict | None, sources: dict, device: torch.device, d: Dist,
           on_epoch: Callable[[dict], None] | None) -> TrainResult:
    """The loop of `train` once options, model config, device and process group are settled."""
    from cunet.data.augment import AugmentConfig
    from cunet.data.spec import get_spec
    from cunet.data.torch_dataset import LandmarkDataset
    from cunet.model import CUNet
    from cunet.model.checkpoint import save_checkpoint

    out = Path(run.out)
    last_path, best_path = out / "last.pt", out / "best.pt"
    quant = quant_cfg.to_dict() if quant_cfg is not None else None
    show = run.progress and d.main
    console = runlog.console() if show else None

    def log(msg: str) -> None:
        if console is not None:
            console.print(msg, markup=False, highlight=False, soft_wrap=True)

    metric_name = Task(run.task).metric

    # ---- data (checked whole before epoch 1: the batch rule of `cunet.batch`)
    spec = get_spec(run.task)
    skips = Skips(run.strict)
    train_samples = _load_split(run, "train", skips, log)
    val_samples = _load_split(run, "test", skips, log) if d.main else []
    if run.task == "pose" and any(s.headbox is None for s in val_samples):
        bad = next(s for s in val_samples if s.headbox is None)
        raise CunetError(f"{run.data}: validation record {bad.key} has no headbox; PCKh@0.5 needs head boxes")
    if run.batch_size % d.world:
        raise CunetError(f"batch size {run.batch_size} does not split over {d.world} processes")
    per_rank = run.batch_size // d.world
    train_ds = LandmarkDataset(train_samples, cfg.input_size, train=True, augment=AugmentConfig(), sigma=run.sigma,
                               flip_perm=spec.flip_permutation, seed=run.seed)
    sampler = EpochSampler(len(train_ds), run.seed, d.rank, d.world)
    # A last batch of one or two images gives noisy BatchNorm statistics; drop it unless it is all there is.
    loader = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, num_workers=run.workers,
                        drop_last=len(sampler) >= per_rank, pin_memory=device.type == "cuda")
    val_loader = None
    if d.main:
        val_ds = LandmarkDataset(val_samples, cfg.input_size, train=False, sigma=run.sigma)
        val_loader = DataLoader(val_ds, batch_size=max(per_rank, 16), shuffle=False, num_workers=run.workers)

    # ---- model (seeded: a resumed run rebuilds exactly the same starting point before loading its weights)
    torch.manual_seed(run.seed)
    model = CUNet(cfg)
    if quant_cfg is not None:
        from cunet.model.quant import apply_quantization

        apply_quantization(model, quant_cfg)
    if run.init is not None and saved is None:  # a resumed run's weights come from last.pt
        load_init(model, run.init, run.task)
    model.to(device)
    teacher = None
    if run.teacher is not None:
        from cunet.train.distill import load_teacher

        teacher = load_teacher(run.teacher, run.task, cfg.input_size, cfg.input_size // cfg.heatmap_stride, device)
    bn_loader = None
    if run.bn_reestimate:  # the epoch's augmented crops again (see cunet.train.bn for why not un-augmented ones)
        # Its own generator: a DataLoader draws a seed from the global RNG each pass, which the stochastic rounding
        # of low-bit gradients also draws from; re-estimation must not change what training does next.
        bn_loader = DataLoader(train_ds, batch_size=per_rank, shuffle=False, num_workers=run.workers,
                               generator=torch.Generator())
    optimizer = _optimizer(run, _param_groups(run, model))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(run.milestones), gamma=run.gamma)
    amp = _amp_dtype(run, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)

    # ---- resume
    start_epoch, step, best, history, elapsed = 0, 0, None, [], 0.0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(saved["scaler"])
        start_epoch, step, best = int(saved["epoch"]), int(saved["step"]), saved.get("best_metric")
        history, elapsed = list(saved.get("history", [])), float(saved.get("elapsed", 0.0))
        set_rng_state(saved["rng"])
        log(f"resuming {last_path} after epoch {start_epoch}/{run.epochs} "
            f"(best {metric_name} {runlog.fmt_metric(best)})")
    net = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    if show and start_epoch == 0:
        log(f"training {run.variant} ({runlog.describe(cfg)}"
            + (f", {quant_cfg.describe()}" if quant_cfg is not None else "")
            + (f" after {run.quant_delay} full-precision epoch(s)" if quant_cfg is not None and run.quant_delay else "")
            + (f", from {run.init}" if run.init is not None else "")
            + (f", distilling from {run.teacher} (weight {run.distill_weight:g})" if teacher is not None else "")
            + (", BatchNorm re-estimated every epoch" if run.bn_reestimate else "")
            + f") on {runlog.count(train_samples, run.task)}, validating on "
            f"{runlog.count(val_samples, run.task)}; {run.optimizer} lr {run.lr:g}"
            + (f" (inner convs x{run.conv_lr_scale:g})" if run.conv_lr_scale not in (None, 1.0) else "")
            + f", batch {run.batch_size}, {run.epochs} epoch(s), "
            f"lr x{run.gamma:g} after epoch(s) {', '.join(map(str, run.milestones)) or '-'}; device {device}"
            + (f", {d.world} processes" if d.world > 1 else ""))

    # ---- epochs
    budget = run.max_minutes * 60.0 if run.max_minutes is not None else math.inf
    epoch = start_epoch
    stopped = elapsed >= budget and start_epoch < run.epochs
    progress = runlog.progress_bar(console) if show else None
    try:
        while epoch < run.epochs and not stopped:
            t0 = time.perf_counter()
            train_ds.set_epoch(epoch)
            sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            quantizing = quant_cfg is not None and epoch >= run.quant_delay
            if quant_cfg is not None:
                from cunet.model.quant import set_quantization_active

                set_quantization_active(model, quantizing)
            net.train()
            total, count = torch.zeros((), dtype=torch.float64, device=device), 0
            task_id = progress.add_task(f"epoch {epoch + 1}/{run.epochs}", total=len(loader), loss="") \
                if progress is not None else None
            for batch in loader:
                images = batch["image"].to(device, non_blocking=True)
                target = batch["target"].to(device, non_blocking=True)
                mask = batch["mask"].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    outputs = net(images)
                    taught = None
                    if teacher is not None:
                        with torch.no_grad():
                            taught = teacher(images)
                if taught is None:
                    loss = heatmap_loss(outputs, target, mask)
                else:
                    loss = distill_loss(outputs, target, taught, mask, run.distill_weight)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                # Accumulate on the device: `.item()` here would be a host sync per step on CUDA.
                total += loss.detach().double() * len(images)
                count += len(images)
                if progress is not None:
                    shown = device.type == "cpu" or step % 20 == 0  # the same host sync, so not every step on GPUs
                    progress.update(task_id, advance=1, **({"loss": f"loss {loss.item():.3e}"} if shown else {}))
            scheduler.step()
            train_loss = all_mean(float(total), count, d)
            if not math.isfinite(train_loss):
                raise CunetError(f"training diverged: loss {train_loss} in epoch {epoch + 1}; lower the lr "
                                 f"(now {run.lr:g}) or resume from an earlier {last_path}")
            if bn_loader is not None and (quant_cfg is None or quantizing):
                reestimate_bn(model, (b["image"] for b in bn_loader), device)
            value = _validate(model, val_loader, val_samples, run.task, run.sigma, device, amp) if d.main else 0.0
            epoch += 1
            seconds = time.perf_counter() - t0
            elapsed += seconds
            # A full-precision warm-up epoch is not a candidate for best.pt: it would export as a quantized model
            # that was never trained quantized.
            improved = _better(metric_name, value, best) and (quant_cfg is None or quantizing)
            stop_now = elapsed >= budget and epoch < run.epochs
            value, improved_f, stop_f = broadcast([value, float(improved), float(stop_now)], d)
            improved, stopped = bool(improved_f), bool(stop_f)
            if improved:
                best = value
            entry = {"epoch": epoch, "train_loss": train_loss, metric_name: value, "lr": lr, "seconds": seconds,
                     "elapsed": elapsed, "best": improved}
            if quant_cfg is not None:
                entry["quantized"] = quantizing
            history.append(entry)
            if d.main:
                state = {
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "epoch": epoch, "step": step, "best_metric": best, "metric_name": metric_name,
                    "rng": rng_state(), "args": run.to_dict(), "history": history, "quant": quant,
                    "elapsed": elapsed, "sources": sources,
                }
                if improved:
                    save_checkpoint(best_path, model, run.task, **state)
                save_checkpoint(last_path, model, run.task, **state)
                runlog.write_logs(out, history, metric_name)
                if progress is not None:
                    progress.remove_task(task_id)
                log(f"epoch {epoch}/{run.epochs}  loss {train_loss:.4e}  {metric_name} {value:.2f}%  lr {lr:.2e}  "
                    f"{seconds:.1f}s{'  *best' if improved else ''}"
                    f"{'  (full-precision warm-up)' if quant_cfg is not None and not quantizing else ''}")
                if on_epoch is not None:
                    on_epoch(entry)
        if stopped:
            log(f"stopped after epoch {epoch}: the {run.max_minutes:g}-minute budget is used up "
                f"({elapsed / 60:.1f} min); --resume with a larger --max-minutes continues")
    finally:
        if progress is not None:
            progress.stop()
    if d.main and not best_path.exists():  # every epoch's metric was NaN: best.pt is the last state
        from cunet.io import write_bytes

        write_bytes(best_path, last_path.read_bytes())
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()  # the other ranks return only once rank 0's checkpoints are on disk
    return TrainResult(best_path, last_path, history, float("nan") if best is None else float(best), metric_name,
                       elapsed, epoch, skips.to_json(), len(train_samples))
