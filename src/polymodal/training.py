"""The Trainer shared by every model.

The trainer owns the loop and the schedules; models only compute ``loss(batch, beta)``.
The KL weight beta rises linearly per step from ~0 to 1 over ``kl_warmup`` epochs and is
passed to the loss as a plain number. Validation uses beta = 1 (the true ELBO), so
validation losses are comparable across epochs.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .data import Batch
from .models.base import ConfigError, Model, make_config


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    kl_warmup: float = 0.0
    patience: int | None = None
    seed: int | None = 0
    threads: int | None = 1
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.kl_warmup < 0:
            raise ConfigError(f"TrainConfig: epochs, batch_size and lr must be positive and kl_warmup >= 0, got {self}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"TrainConfig: patience must be at least 1, got {self.patience}")
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ConfigError(f"TrainConfig: device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextmanager
def torch_threads(n: int | None):
    """Use ``n`` intra-op threads inside the block. One thread is the default for training:
    the small matrix products of these models run much faster single-threaded on a busy
    machine (see ``benchmarks/speed.py``)."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Trainer:
    """Fits a model with Adam, KL warm-up, validation and early stopping."""

    def __init__(self, model: Model, config: TrainConfig | dict | None = None, **kwargs: Any):
        if config is None or isinstance(config, dict):
            config = make_config(TrainConfig, {**(config or {}), **kwargs})
        elif kwargs:
            raise ConfigError("Trainer: pass either a config or keyword options, not both")
        self.model = model
        self.config = config
        self.device = resolve_device(config.device)
        self.history: list[dict[str, float]] = []

    def beta(self, step: int, steps_per_epoch: int) -> float:
        if self.config.kl_warmup == 0:
            return 1.0
        return min(1.0, (step + 1) / (self.config.kl_warmup * steps_per_epoch))

    def _batches(self, data: Batch, generator: torch.Generator | None):
        n = len(data)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, self.config.batch_size):
            yield data.select(order[start : start + self.config.batch_size]).to(self.device)

    @torch.no_grad()
    def evaluate(self, data: Batch) -> dict[str, float]:
        """Mean loss and terms per sample over ``data``, with beta = 1, in eval mode."""
        self.model.eval()
        totals: dict[str, float] = {}
        for batch in self._batches(data, None):
            out = self.model.loss(batch, beta=1.0)
            for key, value in {"loss": out.loss, **out.terms}.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(batch)
        return {key: value / len(data) for key, value in totals.items()}

    def fit(self, train: Batch, valid: Batch | None = None) -> list[dict[str, float]]:
        """Train for ``epochs`` (fewer with early stopping on ``valid``); returns the history."""
        c = self.config
        if c.patience is not None and valid is None:
            raise ConfigError("Trainer: early stopping (patience) needs validation data")
        if c.seed is not None:
            torch.manual_seed(c.seed)
        generator = torch.Generator().manual_seed(c.seed if c.seed is not None else torch.seed())
        model = self.model.to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
        steps_per_epoch = math.ceil(len(train) / c.batch_size)
        best, best_state, waited, step = math.inf, None, 0, 0
        bar = tqdm(range(1, c.epochs + 1), desc=f"{model.name}", disable=not c.progress, unit="epoch")
        with torch_threads(c.threads):
            for epoch in bar:
                start = time.perf_counter()
                model.train()
                total, seen = 0.0, 0
                for batch in self._batches(train, generator):
                    beta = self.beta(step, steps_per_epoch)
                    out = model.loss(batch, beta=beta)
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    optimizer.step()
                    total += out.loss.detach() * len(batch)
                    seen += len(batch)
                    step += 1
                record = {"epoch": epoch, "loss": float(total) / seen, "beta": beta, "seconds": time.perf_counter() - start}
                if valid is not None:
                    record.update({f"valid_{k}": v for k, v in self.evaluate(valid).items()})
                self.history.append(record)
                bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "valid_loss") if k in record})
                if not math.isfinite(record["loss"]):
                    raise FloatingPointError(f"non-finite training loss at epoch {epoch}")
                if c.patience is not None:
                    if record["valid_loss"] < best:
                        best, waited = record["valid_loss"], 0
                        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    else:
                        waited += 1
                        if waited >= c.patience:
                            break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return self.history
