"""Scores of a model on entries it did not see: hide some observed entries, impute them,
and compare with the truth, per modality.

``hold_out`` hides entries by a missingness mechanism (``mcar`` with a rate; ``mar`` and
``mnar`` as defined in :mod:`polymodal.missing`, the VSAE paper's, whose rate follows from
the data). ``evaluate`` imputes the hidden entries with importance sampling and scores each
modality on them: NRMSE (RMSE over the standard deviation of the true values, per feature,
averaged) for numeric modalities, accuracy and PFC (the fraction falsely classified) for
categorical ones, and for both the held-out log-likelihood log p(x_hidden | x_observed) per
hidden entry, estimated with the same importance samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import missing
from .data import Batch, concat
from .metrics import nrmse, pfc
from .models.base import Model
from .progress import chunked

MECHANISMS = ("mcar", "mar", "mnar")


def _rows(batch: Batch) -> torch.Tensor:
    """Every entry of a sample (of a time step, for sequences) side by side: ``[rows, entries]``."""
    lead = 2 if any(m.sequential for m in batch.schema) else 1
    return torch.cat([batch.values[m.name].float().reshape(*batch.values[m.name].shape[:lead], -1).flatten(0, lead - 1)
                      for m in batch.schema], 1)


def hold_out(batch: Batch, rate: float = 0.2, mechanism: str = "mcar", seed: int = 0) -> Batch:
    """A copy of ``batch`` with some observed entries hidden. MCAR hides each with
    probability ``rate``; MAR and MNAR follow :func:`polymodal.missing.mar` / ``mnar`` on the
    (scaled) values of each sample's entries side by side, and ignore ``rate``."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    generator = torch.Generator().manual_seed(seed)
    table = _rows(batch)
    if mechanism == "mcar":
        keep = missing.mcar(tuple(table.shape), rate, generator)
    else:
        keep = getattr(missing, mechanism)(table, generator)
    observed, start = {}, 0
    for m in batch.schema:
        mask = batch.observed[m.name]
        lead = mask.dim() - len(m.shape)
        width = int(np.prod(mask.shape[lead:], dtype=int))
        observed[m.name] = mask & keep[:, start : start + width].reshape(mask.shape)
        start += width
    return batch.with_observed(observed)


@dataclass
class Evaluation:
    """The data, the same with entries hidden, its imputation, and the scores per modality."""

    truth: Batch
    held: Batch
    imputed: Batch
    scores: dict[str, dict[str, float]]


def _held_out_log_likelihood(model: Model, truth: Batch, held: Batch, samples: int) -> dict[str, torch.Tensor]:
    """Per modality and sample: log sum_k w_k p(x_hidden | z_k) with self-normalised weights
    w_k of the draws given what ``held`` observes."""
    device = model.device
    hidden = Batch(truth.schema, {n: v.to(device) for n, v in truth.values.items()},
                   {n: (truth.observed[n] & ~held.observed[n]).to(device) for n in truth.schema.names})
    draws = model.importance(held.to(device), samples)
    weights = draws.log_w.log_softmax(0)
    return {name: torch.logsumexp(weights + model.reconstruction(hidden, {name: obs}, model.unit_weights), 0).cpu()
            for name, obs in draws.decoded.items()}


def imputation_scores(truth: Batch, held: Batch, imputed: Batch) -> dict[str, dict[str, float]]:
    """Per modality with hidden entries (observed in ``truth``, not in ``held``): NRMSE of
    ``imputed`` on them for numeric modalities (features that do not vary left out), accuracy
    and PFC for categorical ones, and the number of ``entries`` scored."""
    scores = {}
    for m in truth.schema:
        hidden = (truth.observed[m.name] & ~held.observed[m.name]).cpu().numpy()
        if not hidden.any():
            continue
        lead = hidden.ndim - len(m.shape)
        shape = (-1, int(np.prod(hidden.shape[lead:], dtype=int))) if m.shape else (-1, 1)
        true, guess = truth.values[m.name].cpu().numpy().reshape(shape), imputed.values[m.name].cpu().numpy().reshape(shape)
        rows = hidden.reshape(shape)
        if m.categorical:
            score = {"accuracy": float((true == guess)[rows].mean()), "pfc": pfc(guess, true, rows)}
        else:  # the spread of the truth over its observed entries only (unobserved ones hold 0); constant features have none
            true = np.where(truth.observed[m.name].cpu().numpy().reshape(shape), true, np.nan)
            varies = np.nanstd(true, 0) > 0
            score = {"nrmse": nrmse(guess[:, varies], true[:, varies], rows[:, varies]) if rows[:, varies].any() else np.nan}
        score["entries"] = int(hidden.sum())
        scores[m.name] = score
    return scores


@torch.no_grad()
def evaluate(model: Model, truth: Batch, rate: float = 0.2, mechanism: str = "mcar", seed: int = 0,
             samples: int = 100, progress: bool = False) -> Evaluation:
    """Hide entries of ``truth`` (see :func:`hold_out`), impute them and score each modality.

    ``samples`` importance samples make each imputation and the held-out log-likelihood;
    ``samples=0`` imputes from the posterior mean and scores no log-likelihood (the only
    choice for a model without a density, such as MFM)."""
    model.eval()
    held = hold_out(truth, rate, mechanism, seed)
    torch.manual_seed(seed)
    parts = chunked(lambda rows: model.impute(held.select(rows), samples=samples).to("cpu"), len(held),
                    progress=progress, desc="impute")
    imputed = concat(parts)
    scores = imputation_scores(truth, held, imputed)
    if samples:
        log_liks = chunked(lambda rows: _held_out_log_likelihood(model, truth.select(rows), held.select(rows), samples),
                           len(held), progress=progress, desc="log-likelihood")
        for name, score in scores.items():
            score["log_likelihood"] = sum(float(ll[name].sum()) for ll in log_liks) / score["entries"]
    return Evaluation(truth, held, imputed, scores)


def draw_imputations(model: Model, batch: Batch, draws: int, samples: int = 100, seed: int = 0) -> list[Batch]:
    """``model.draw_imputations`` (see :meth:`Model.draw_imputations`) from the random state
    ``seed``, on the CPU."""
    torch.manual_seed(seed)
    return [b.to("cpu") for b in model.draw_imputations(batch, draws, samples)]
