"""The Trainer shared by every model.

The trainer owns the loop and the schedules; a model only computes
``loss(batch, *, beta=..., **weights)``. Loss weights (the KL weight ``beta`` and any
per-model weight, those the model declares in ``loss_weights``) follow :class:`Schedule` s
from the config and reach the loss as plain numbers. Validation uses every weight at its final value, so validation losses are
comparable across epochs.

Reproducibility and exact resume: the random streams of epoch ``e`` (the data order and
the model's sampling noise) are seeded from ``(seed, e)``, and the noise also from the
process rank. An epoch therefore draws the same numbers whether the run went straight
through or was resumed from a checkpoint, on one process or several.

Multi-process training: run the same script under ``torchrun``. The trainer joins the
process group that torchrun describes (gloo on CPU, NCCL on CUDA), wraps the model in
DistributedDataParallel, gives each rank its shard of every epoch's permutation (as
``DistributedSampler`` does), averages validation metrics across ranks before early
stopping, and writes checkpoints and logs from rank 0 only. ``batch_size`` is per process.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import pickle
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from .config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, ConfigError, checked, make_config
from .data import Batch, DataError
from .files import ModelFileError, atomic_write
from .models.base import LossOutput, Model

CHECKPOINT = "checkpoint.pt"
# What a checkpoint holds; "config" is the TrainConfig it was written under.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "history", "seed", "config", "epoch", "step", "best", "waited",
                   "best_state")
# The options that shape the training trajectory; resuming under other values needs override=True.
TRAJECTORY = ("batch_size", "epoch_steps", "lr", "optimizer", "weight_decay", "lr_schedule", "lr_gamma", "clip_grad", "kl_warmup",
              "schedules", "patience", "seed")
# An epoch's mean loss this many times the magnitude of the first step's (or of 1) is reported as divergence.
DIVERGENCE = 1e3
# A validation loss this many times the magnitude of the best one (or of 1) above it is reported as divergence.
VALID_DIVERGENCE = 10.0

log = logging.getLogger("polymodal")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class DivergenceWarning(RuntimeWarning):
    """The training loss grew by orders of magnitude: the learning rate is probably too high."""


@dataclass
@checked(epochs=NON_NEGATIVE, kind=("linear", "step"))
class Schedule:
    """A loss weight going from ``start`` to ``end`` over ``epochs`` epochs: linearly per
    step (``"linear"``), or all at once when they are over (``"step"``)."""

    start: float = 0.0
    end: float = 1.0
    epochs: float = 0.0
    kind: str = "linear"

    def __call__(self, step: int, steps_per_epoch: int) -> float:
        span = self.epochs * steps_per_epoch
        if step >= span:
            return self.end
        if self.kind == "step":
            return self.start
        return self.start + (self.end - self.start) * (step + 1) / span


@dataclass
@checked(epochs=AT_LEAST_ONE, batch_size=AT_LEAST_ONE, lr=POSITIVE, optimizer=("adam", "adamw"), weight_decay=NON_NEGATIVE,
         lr_schedule=(None, "cosine", "exponential"), lr_gamma=POSITIVE, clip_grad=POSITIVE, kl_warmup=NON_NEGATIVE,
         patience=AT_LEAST_ONE, threads=AT_LEAST_ONE, checkpoint_every=AT_LEAST_ONE, valid_every=AT_LEAST_ONE,
         precision=("fp32", "bf16"), check_every=AT_LEAST_ONE, epoch_steps=AT_LEAST_ONE)
class TrainConfig:
    """``epoch_steps``: an epoch is this many batches rather than one pass over the data
    (``None``): epochs walk through one seeded permutation of the rows after another, so the
    cost of an epoch, and of the validation after it, does not grow with the data."""

    epochs: int = 100
    batch_size: int = 128
    epoch_steps: int | None = None
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str | None = None
    lr_gamma: float = 0.99
    clip_grad: float | None = None
    kl_warmup: float = 0.0
    schedules: dict[str, Any] = field(default_factory=dict)
    patience: int | None = None
    keep_best: bool = True
    valid_every: int = 1
    seed: int = 0
    threads: int | None = 1
    device: str = "cpu"
    progress: bool = True
    out: str | os.PathLike | None = None
    checkpoint_every: int = 1
    tensorboard: bool = False
    compile: bool = False
    precision: str = "fp32"
    check_every: int = 1

    def __post_init__(self):
        if self.out is not None:
            self.out = os.fspath(self.out)  # a str, so that the checkpoint that records it loads without pickles
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ConfigError(f"TrainConfig: device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}")
        self.schedules = {
            name: s if isinstance(s, Schedule) else make_config(Schedule, dict(s)) for name, s in self.schedules.items()
        }
        if self.kl_warmup and "beta" in self.schedules:
            raise ConfigError("TrainConfig: give the beta schedule either as kl_warmup or in schedules, not both")
        if self.kl_warmup:
            self.schedules["beta"] = Schedule(0.0, 1.0, self.kl_warmup)


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``; a CUDA device this machine lacks is a :class:`ConfigError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = f"this torch {torch.__version__} is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ConfigError(f"device {name!r}: CUDA is not available ({built}); use device='cpu' or 'auto'")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def native_cpu_bf16() -> bool:
    """Whether this CPU has bfloat16 dot products in hardware (AVX512-BF16 or AMX), where
    oneDNN runs a bf16 convolution or matrix product about 1.6x faster than fp32. torch
    exposes these checks only privately; a torch without them gets False."""
    cpu = torch.cpu
    return any(getattr(cpu, check, lambda: False)() for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def seed_stream(seed: int, device: torch.device) -> None:
    """Seed the random stream that draws on ``device`` (the CPU's, or that GPU's): what
    ``torch.manual_seed`` does for it, without seeding every other backend, which records a
    stack trace per call and cost a full-batch step on a small table 10% of its time."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


@contextmanager
def torch_threads(n: int | None):
    """Use ``n`` intra-op threads inside the block. One thread is the default for training:
    the small matrix products of these models ran several times slower with two threads when
    the other core was busy (``benchmarks/speed.py --busy``)."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Objective(nn.Module):
    """``forward`` is the model's loss, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, weights: dict[str, float]) -> LossOutput:
        return self.model.loss(batch, **weights)


def _undecorated(method: Callable) -> Callable:
    return getattr(method, "__wrapped__", method)


class _EagerOptimizer:
    """torch's Adam(W) without the wrappers that keep TorchDynamo out of its methods. Each
    imports ``torch._dynamo`` on its first call (0.8-1.9 s here, a process's first step),
    which only a compiled optimizer step needs; the wrapped methods are torch's own,
    unchanged. ``step`` runs without autograd, as torch's wrapper does for non-differentiable
    optimizers."""

    add_param_group = _undecorated(torch.optim.Optimizer.add_param_group)
    zero_grad = _undecorated(torch.optim.Optimizer.zero_grad)
    state_dict = _undecorated(torch.optim.Optimizer.state_dict)
    load_state_dict = _undecorated(torch.optim.Optimizer.load_state_dict)

    @torch.no_grad()
    def step(self, closure=None):
        return _undecorated(self.torch_class.step)(self, closure)


class Adam(_EagerOptimizer, torch.optim.Adam):
    torch_class = torch.optim.Adam


class AdamW(_EagerOptimizer, torch.optim.AdamW):
    torch_class = torch.optim.AdamW


def _process_group(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the group torchrun describes if there is one."""
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """Fits a model: Adam(W), loss-weight schedules, LR schedule, gradient clipping,
    validation, early stopping, checkpoints and exact resume, CSV/TensorBoard logs, DDP."""

    def __init__(self, model: Model, config: TrainConfig | dict | None = None, **kwargs: Any):
        if config is None or isinstance(config, dict):
            config = make_config(TrainConfig, {**(config or {}), **kwargs})
        elif kwargs:
            raise ConfigError("Trainer: pass either a config or keyword options, not both")
        self.model = model
        self.config = config
        defaults = {name: make_config(Schedule, dict(s)) for name, s in model.default_schedules().items()}
        self.schedules = {**defaults, **config.schedules}
        unknown = sorted(set(self.schedules) - model.loss_weights)
        if unknown:
            raise ConfigError(f"Trainer: {model.name}.loss takes no weights {unknown}; it takes {sorted(model.loss_weights)}")
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and "LOCAL_RANK" in os.environ:
            self.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if config.precision == "bf16":
            if self.device.type == "cpu" and not native_cpu_bf16():
                raise ConfigError("Trainer: precision='bf16' on a CPU needs native bfloat16 arithmetic (AVX512-BF16 or "
                                  "AMX), which this CPU lacks; on such a CPU bf16 autocast is slower than fp32, so it is refused "
                                  "rather than ignored: use precision='fp32'")
            if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                raise ConfigError(f"Trainer: precision='bf16': the GPU {torch.cuda.get_device_name(self.device)} has no "
                                  "bfloat16 support; use precision='fp32'")
            if self.device.type not in ("cpu", "cuda"):
                raise ConfigError(f"Trainer: precision='bf16' runs on a CPU or a CUDA device, and the device is "
                                  f"{self.device.type!r} (device={config.device!r}); use precision='fp32'")
        self.rank, self.world = _process_group(self.device)
        self.history: list[dict[str, float]] = []
        self.stopped_early: str | None = None  # why the last fit stopped before its last epoch, if it did

    @property
    def out(self) -> Path | None:
        return Path(self.config.out) if self.config.out else None

    def loss_weights(self, step: int, steps_per_epoch: int) -> dict[str, float]:
        """The loss weights at a global step."""
        return {name: s(step, steps_per_epoch) for name, s in self.schedules.items()}

    def final_loss_weights(self) -> dict[str, float]:
        return {name: s.end for name, s in self.schedules.items()}

    def _batches(self, data: Batch, epoch: int | None):
        """This rank's batches: a shard of epoch ``epoch``'s permutation, or of the data in order."""
        n = len(data)
        if epoch is None:
            order = torch.arange(n)[self.rank :: self.world]
        else:
            order = self._order(n, epoch)
            if self.world > 1:  # pad to a multiple of the world size, as DistributedSampler does
                order = torch.cat([order, order[: (-n) % self.world]])[self.rank :: self.world]
        for start in range(0, len(order), self.config.batch_size):
            yield data.select(order[start : start + self.config.batch_size]).to(self.device)

    def _order(self, n: int, epoch: int) -> torch.Tensor:
        """The rows of epoch ``epoch``: a seeded permutation of all ``n``, or with ``epoch_steps``
        the epoch's stretch of the permutations of consecutive passes over the data."""
        c = self.config

        def permutation(index: int) -> torch.Tensor:
            return torch.randperm(n, generator=torch.Generator().manual_seed(c.seed * 1_000_003 + index))

        if c.epoch_steps is None:
            return permutation(epoch)
        size = c.epoch_steps * c.batch_size * self.world
        position, end, parts = (epoch - 1) * size, epoch * size, []
        while position < end:
            done, offset = divmod(position, n)
            parts.append(permutation(done + 1)[offset : offset + end - position])
            position += len(parts[-1])
        return torch.cat(parts)

    def check_data(self, role: str, data: Any) -> None:
        """Refuse what the model cannot learn from, before any step: not a Batch, a batch of
        another schema, no samples, or nothing observed in any sample."""
        self.model.check_arguments(f"fit ({role} data)", data)
        if len(data) == 0:
            raise DataError(f"Trainer: the {role} data has no samples")
        if not any(bool(mask.any()) for mask in data.observed.values()):
            raise DataError(
                f"Trainer: the {role} data has no observed entry in any modality of {data.schema.names}; "
                "there is nothing to learn from (NaN and observed=False mark entries as missing)"
            )

    @torch.no_grad()
    def evaluate(self, data: Batch) -> dict[str, float]:
        """Mean loss and terms per sample over ``data`` with the final loss weights, in eval
        mode; averaged over all ranks under DDP. The model's sampling noise is the same at
        every call, so epochs are compared on equal terms, and training's random streams are
        left untouched."""
        self.check_data("evaluation", data)
        self.model.eval()
        totals: dict[str, torch.Tensor] = {}
        count = torch.zeros((), dtype=torch.float64)
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            seed_stream(self.config.seed + self.rank, self.device)
            for batch in self._batches(data, None):
                out = self.model.loss(batch, **self.final_loss_weights())
                for key, value in {"loss": out.loss, **out.terms}.items():
                    totals[key] = totals.get(key, 0.0) + value.detach().double().cpu() * len(batch)
                count += len(batch)
        names = sorted(totals)
        packed = torch.stack([totals[k] for k in names] + [count])
        if self.world > 1:
            packed = packed.to(self.device)
            dist.all_reduce(packed)
            packed = packed.cpu()
        return {k: float(v / packed[-1]) for k, v in zip(names, packed[:-1])}

    def _optimizer(self, model: nn.Module):
        c = self.config
        kind = AdamW if c.optimizer == "adamw" else Adam
        # fused: one kernel for all parameters, 7-12% faster per MVAE step than the per-tensor loop (the two
        # optimizers timed interleaved in one process on the case of python -m benchmarks.speed)
        optimizer = kind(model.parameters(), lr=c.lr, weight_decay=c.weight_decay, fused=True)
        scheduler = None
        if c.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.epochs)
        elif c.lr_schedule == "exponential":
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=c.lr_gamma)
        return optimizer, scheduler

    def fit(
        self,
        train: Batch,
        valid: Batch | None = None,
        resume: bool | str | Path = False,
        override: bool = False,
        score: Callable[[Model], float] | None = None,
        started: Callable[[], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train up to ``epochs`` (fewer with early stopping on ``valid``); returns the history.

        Validation runs every ``valid_every`` epochs (and after the last): the loss on
        ``valid``, and ``score(model)`` (lower is better, logged as ``valid_score``) when a
        score is given. Early stopping watches ``valid_score`` if there is one, else
        ``valid_loss``; ``patience`` counts validations without improvement. With
        ``keep_best`` (default) the weights of the best validation are restored at the end.

        ``resume=True`` continues from ``out/checkpoint.pt`` when it exists (and starts afresh
        otherwise); a path resumes from that checkpoint. A checkpoint written under other
        values of the options in ``TRAJECTORY`` (such as ``lr``) is refused with the
        differences listed, unless ``override=True``, which applies this trainer's values
        from the resumed epoch on and logs each change. Every check (data, options, the
        checkpoint) comes before anything is written; ``started()``, when given, is called
        once they have all passed, before the first epoch (to write what belongs beside the run).

        Warns with :class:`DivergenceWarning` when an epoch's mean loss is ``DIVERGENCE``
        times the first step's in magnitude, or the validation loss rises ``VALID_DIVERGENCE``
        times the magnitude of its best (or of 1) above it; raises :class:`NonFiniteLossError` naming the
        modalities whose reconstruction term became non-finite.
        """
        c = self.config
        self.check_data("training", train)
        self.model.observe(train)
        if valid is not None:
            self.check_data("validation", valid)
        if c.patience is not None and valid is None and score is None:
            raise ConfigError("Trainer: early stopping (patience) needs validation data or a score")
        model = self.model.to(self.device)
        objective: nn.Module = _Objective(model)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids)
        if c.compile:
            objective = torch.compile(objective)
        optimizer, scheduler = self._optimizer(model)
        state = {"epoch": 0, "step": 0, "best": math.inf, "waited": 0, "best_state": {}}
        self.history, self.stopped_early = [], None
        checkpoint = self._checkpoint_path(resume)
        if checkpoint is not None:
            state = self._restore(checkpoint, model, optimizer, scheduler, override)
        writer = self._tensorboard()
        if started is not None:
            started()
        steps_per_epoch = c.epoch_steps or math.ceil(math.ceil(len(train) / self.world) / c.batch_size)
        main = self.rank == 0
        show = c.progress and main
        unit = "step" if steps_per_epoch == 1 else "epoch"  # a full batch: the bar counts steps, and says so
        bar = tqdm(range(state["epoch"] + 1, c.epochs + 1), desc=model.name, disable=not show, unit=unit)
        first = None  # the first step's loss (on the device until an epoch ends), the yardstick of divergence
        warned = False
        lowest = math.inf  # the best validation loss, the yardstick of its divergence
        with torch_threads(c.threads):
            for epoch in bar:
                seed_stream((c.seed * 1_000_003 + epoch) * 1_009 + self.rank, self.device)
                start = time.perf_counter()
                model.train()
                total, seen = torch.zeros((), device=self.device), 0
                pending: list[torch.Tensor] = []  # the losses since the last finiteness check, on the device
                for i, batch in enumerate(self._batches(train, epoch)):
                    weights = self.loss_weights(state["step"], steps_per_epoch)
                    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=c.precision == "bf16"):
                        out = objective(batch, weights)
                    pending.append(out.loss.detach())
                    if first is None:
                        first = pending[0]
                    checked = (i + 1) % c.check_every == 0 or i + 1 == steps_per_epoch
                    if checked:
                        self._check_finite(pending, epoch, i, steps_per_epoch, batch, out, state["step"] == 0)
                        pending = []
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    if c.clip_grad is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip_grad)
                    optimizer.step()
                    total += out.loss.detach() * len(batch)
                    seen += len(batch)
                    state["step"] += 1
                    if show and checked and (i + 1) % math.lcm(10, c.check_every) == 0:  # a host read where one was made
                        bar.set_postfix(loss=f"{float(total) / seen:.4g}")
                if scheduler is not None:
                    scheduler.step()
                record = {"epoch": epoch, "loss": float(total) / seen, **weights, "lr": optimizer.param_groups[0]["lr"]}
                record["seconds"] = time.perf_counter() - start
                start_loss = abs(float(first))
                if not warned and abs(record["loss"]) > DIVERGENCE * max(start_loss, 1.0):
                    warned = True
                    warnings.warn(
                        f"{model.name}: the training loss grew from {start_loss:.4g} at the first step to {record['loss']:.4g} "
                        f"in epoch {epoch}: training is diverging; lower lr (now {c.lr:g}) or set clip_grad",
                        DivergenceWarning, stacklevel=2,
                    )
                validating = epoch % c.valid_every == 0 or epoch == c.epochs
                if valid is not None and validating:
                    record.update({f"valid_{k}": v for k, v in self.evaluate(valid).items()})
                    lowest = min(lowest, record["valid_loss"])
                    if not warned and record["valid_loss"] - lowest > VALID_DIVERGENCE * max(abs(lowest), 1.0):
                        warned = True
                        kept = "the weights of the best validation are kept" if c.keep_best else "set keep_best to keep them"
                        warnings.warn(
                            f"{model.name}: the validation loss rose from its best, {lowest:.4g}, to {record['valid_loss']:.4g} "
                            f"in epoch {epoch}: training is diverging ({kept}); lower lr (now {c.lr:g}) or set clip_grad",
                            DivergenceWarning, stacklevel=2,
                        )
                if score is not None and validating:
                    record["valid_score"] = float(score(model))
                    model.train()
                self.history.append(record)
                bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "valid_loss", "valid_score") if k in record})
                stop = False
                watched = record.get("valid_score" if score is not None else "valid_loss")
                if watched is not None:
                    if watched < state["best"]:
                        state["best"], state["waited"] = watched, 0
                        if c.keep_best:
                            state["best_state"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    else:
                        state["waited"] += 1
                        stop = c.patience is not None and state["waited"] >= c.patience
                state["epoch"] = epoch
                if main:
                    self._log(record, writer)
                    if self.out and (epoch % c.checkpoint_every == 0 or epoch == c.epochs or stop):
                        self._save(state, model, optimizer, scheduler)
                if stop:
                    self.stopped_early = (
                        f"{model.name}: stopped early at {unit} {epoch} of {c.epochs}: the validation "
                        f"{'score' if score is not None else 'loss'} has not improved on {state['best']:.4g} "
                        f"for {c.patience} validations (patience); the best validation's weights are kept")
                    if show:
                        tqdm.write(self.stopped_early, file=sys.stderr)
                    else:
                        log.info(self.stopped_early)
                    break
        if writer is not None:
            writer.close()
        if c.keep_best and state["best_state"]:
            model.load_state_dict(state["best_state"])
        model.eval()
        return self.history

    def _checkpoint_path(self, resume: bool | str | Path) -> Path | None:
        if resume is False:
            return None
        if resume is True:
            if self.out is None:
                raise ConfigError("Trainer: resume=True needs an out folder")
            path = self.out / CHECKPOINT
            return path if path.exists() else None
        path = Path(resume)
        if path.is_dir():
            path = path / CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from at {path}")
        return path

    def _check_finite(self, losses: list[torch.Tensor], epoch: int, i: int, steps: int, batch: Batch, out: LossOutput,
                      first: bool) -> None:
        """Raise :class:`NonFiniteLossError` if any of ``losses`` (steps ``i + 1 - len(losses)``
        .. ``i`` of this epoch, on the device) is not finite; one host read. The current step
        (the run's ``first``, or not) is checked before the optimizer applies it; an earlier one
        (``check_every > 1``) has been applied, so only the current step's modalities can be
        diagnosed."""
        losses_ = torch.stack(losses)
        bad = ~torch.isfinite(losses_)
        if not bool(bad.any()):
            return
        k = int(bad.nonzero()[0, 0])
        step = i + 2 - len(losses) + k
        kept = f"; the last checkpoint in {self.out} is intact" if self.out else ""
        if k == len(losses) - 1:
            cause = self._diagnose(batch, out, first)
        else:
            cause = (f"found at the check after step {i + 1} (check_every={self.config.check_every}: the steps in between "
                     "were applied, so no modality is singled out; rerun with check_every=1 to see which)")
        raise NonFiniteLossError(f"non-finite loss ({float(losses_[k])}) at epoch {epoch}, step {step} of {steps}: {cause}{kept}")

    def _diagnose(self, batch: Batch, out: LossOutput, first: bool = False) -> str:
        """Which terms of a non-finite loss are to blame, for the error message. At the ``first``
        step, before any update, the weights are the initial ones: the data is to blame, not lr."""
        bad_terms = [k for k, v in out.terms.items() if not torch.isfinite(v).all()]
        try:
            recon = self.model.reconstruction_terms(batch)
        except Exception as error:  # a model broken enough to fail here must not hide the non-finite loss
            return f"the terms {bad_terms} became non-finite (no modality singled out: {type(error).__name__}: {error})"
        bad = [name for name, value in recon.items() if not math.isfinite(value)]
        if not bad:
            where = f"the terms {bad_terms}" if bad_terms else "the loss"
            return f"{where} became non-finite while every modality's reconstruction term is finite under the posterior mean"
        if len(bad) == len(recon):
            return (f"the reconstruction terms of every modality {bad} became non-finite (non-finite weights or posterior: "
                    f"lower lr, now {self.config.lr:g}, or set clip_grad)")
        causes = f"a decoder's output or likelihood overflowed: lower lr (now {self.config.lr:g}), set clip_grad or rescale"
        if first:
            largest = {name: float(batch.values[name][batch.observed[name]].abs().max()) for name in bad
                       if batch.observed[name].any() and not self.model.schema[name].categorical}
            sizes = ", ".join(f"{name!r} up to {value:.3g}" for name, value in largest.items())
            causes = (f"at the first step, before any update, so the data, not the learning rate: values {sizes} overflow "
                      "the likelihood; rescale them (e.g. standardise each column)") if sizes else causes
        if len(bad) > 1:
            return f"the reconstruction terms of modalities {bad} became non-finite ({causes})"
        return f"the reconstruction term of modality {bad[0]!r} became non-finite ({causes})"

    def _save(self, state: dict, model: Model, optimizer, scheduler) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        checkpoint = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "history": self.history,
            "seed": self.config.seed,
            "config": dataclasses.asdict(self.config),
            **state,
        }
        atomic_write(self.out / CHECKPOINT, lambda p: torch.save(checkpoint, p))

    def _restore(self, path: Path, model: Model, optimizer, scheduler, override: bool) -> dict:
        """Load the checkpoint at ``path`` into the model, optimizer and scheduler; every check
        comes before the first change."""
        try:
            checkpoint = torch.load(path, map_location=self.device, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as error:
            # torch's own message advises weights_only=False, which would run code from the file
            raise ModelFileError(
                f"cannot resume from {path}: it is not a polymodal checkpoint or is corrupt ({type(error).__name__})"
            ) from None
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
        if missing:
            raise ModelFileError(f"cannot resume from {path}: the checkpoint lacks {missing}")
        now = dataclasses.asdict(self.config)
        changed = {k: (checkpoint["config"].get(k), now[k]) for k in TRAJECTORY if checkpoint["config"].get(k) != now[k]}
        if changed and not override:
            listed = "; ".join(f"{k}: {old!r} in the checkpoint, {new!r} now" for k, (old, new) in changed.items())
            raise ConfigError(f"cannot resume from {path} with changed options ({listed}); "
                              "pass override=True (`polymodal fit --override`) to apply the new values from the resumed epoch on")
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise ModelFileError(f"cannot resume from {path}: it does not fit this model ({error})") from None
        for k, (old, new) in changed.items():
            log.warning("resuming from %s with %s = %r instead of the checkpoint's %r", path, k, new, old)
        if "lr" in changed or "weight_decay" in changed:  # the optimizer's state holds the old values
            for group in optimizer.param_groups:
                group["lr"], group["weight_decay"] = self.config.lr, self.config.weight_decay
        if scheduler is not None and checkpoint["scheduler"]:
            scheduler.load_state_dict(checkpoint["scheduler"])
        self.history = list(checkpoint["history"])
        best_state = {k: v.cpu() for k, v in checkpoint["best_state"].items()}
        return {k: checkpoint[k] for k in ("epoch", "step", "best", "waited")} | {"best_state": best_state}

    def _tensorboard(self):
        if not (self.config.tensorboard and self.rank == 0):
            return None
        if self.out is None:
            raise ConfigError("Trainer: tensorboard=True needs an out folder for the logs")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("Trainer: tensorboard=True needs the tensorboard package (pip install tensorboard)") from None
        return SummaryWriter(str(self.out / "tensorboard"))

    def _log(self, record: dict[str, float], writer) -> None:
        if writer is not None:
            for key, value in record.items():
                if key != "epoch":
                    writer.add_scalar(key, value, record["epoch"])
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        columns = list(dict.fromkeys(k for r in self.history for k in r))

        def write(path: Path) -> None:
            with open(path, "w", newline="") as f:
                writer_ = csv.DictWriter(f, columns)
                writer_.writeheader()
                writer_.writerows(self.history)

        atomic_write(self.out / "history.csv", write)
