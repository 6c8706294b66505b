"""Scores of a model on entries it did not see: hide some observed entries, impute them,
and compare with the truth, per modality.

``hold_out`` hides entries by a missingness mechanism (``mcar`` with a rate; ``mar`` and
``mnar`` as defined in :mod:`polymodal.missing`, the VSAE paper's, whose rate follows from
the data). ``evaluate`` imputes the hidden entries with importance sampling and scores each
modality on them: NRMSE (RMSE over the standard deviation of the true values, per feature,
averaged) for numeric modalities, accuracy and PFC (the fraction falsely classified) for
categorical ones, and for both the held-out log-likelihood log p(x_hidden | x_observed) per
hidden entry, estimated with the same importance samples.

Every score stands beside simple baselines scored on the same hidden entries
(:func:`baseline_fills`): a static modality's feature mean (numeric) or most frequent
value (categorical) over the entries left observed; a sequence's linear interpolation in
time between the nearest observed steps of its own sequence, and its last observation
carried forward (LOCF). A model whose score is worse than a baseline's is listed in its
modality's ``worse_than``.
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
# A score on fewer hidden entries than this moves much by chance: reports say so beside it.
FEW = 20


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
    """The data, the same with entries hidden, its imputation, and the scores per modality
    (each beside its baselines'; see :func:`with_baselines`)."""

    truth: Batch
    held: Batch
    imputed: Batch
    scores: dict[str, dict]


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


def features(batch: Batch, name: str, values: torch.Tensor | None = None) -> np.ndarray:
    """A modality's values (or ``values`` of its shape) as ``[rows, features]``, time steps as rows."""
    m = batch.schema[name]
    x = (batch.values[name] if values is None else values).cpu().numpy()
    return x.reshape(-1, int(np.prod(m.shape, dtype=int)))


def _modality_scores(truth: Batch, held: Batch, name: str, guess: torch.Tensor) -> dict[str, float] | None:
    """The scores of ``guess`` (values of modality ``name``) on its hidden entries, or None if none is hidden."""
    m = truth.schema[name]
    seen = features(truth, name, truth.observed[name])
    rows = seen & ~features(held, name, held.observed[name])
    if not rows.any():
        return None
    true, guess = features(truth, name), features(truth, name, guess)
    if m.categorical:
        score = {"accuracy": float((true == guess)[rows].mean()), "pfc": pfc(guess, true, rows)}
    else:  # the spread of the truth over its observed entries only (unobserved ones hold 0); constant features have none
        true = np.where(seen, true, np.nan)
        varies = np.nanstd(true, 0) > 0
        score = {"nrmse": nrmse(guess[:, varies], true[:, varies], rows[:, varies]) if rows[:, varies].any() else np.nan}
    score["entries"] = int(rows.sum())
    return score


def imputation_scores(truth: Batch, held: Batch, imputed: Batch) -> dict[str, dict[str, float]]:
    """Per modality with hidden entries (observed in ``truth``, not in ``held``): NRMSE of
    ``imputed`` on them for numeric modalities (features that do not vary left out), accuracy
    and PFC for categorical ones, and the number of ``entries`` scored."""
    scores = {m.name: _modality_scores(truth, held, m.name, imputed.values[m.name]) for m in truth.schema}
    return {name: score for name, score in scores.items() if score is not None}


def metric(score: dict) -> str:
    """The score a modality is judged by, lower being better: PFC if categorical, else NRMSE."""
    return "pfc" if "pfc" in score else "nrmse"


def worse(model: float, baseline: float) -> bool:
    """Whether a model's score (lower is better) is worse than a baseline's; NaN never is."""
    return bool(model > baseline + 1e-12)


def _steps(seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``[N, T, F]`` observed flags: per entry, the last observed step at or before it (-1
    if none) and the next at or after it (T if none), in the same sequence and feature."""
    steps = seen.shape[1]
    t = np.arange(steps)[None, :, None]
    last = np.maximum.accumulate(np.where(seen, t, -1), axis=1)
    following = np.minimum.accumulate(np.where(seen, t, steps)[:, ::-1], axis=1)[:, ::-1]
    return last, following


def _at(values: np.ndarray, steps: np.ndarray) -> np.ndarray:
    return np.take_along_axis(values, steps.clip(0, values.shape[1] - 1), axis=1)


def locf(values: np.ndarray, seen: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``[N, T, F]`` sequences with each entry the last observed value of its sequence and
    feature (before the first observation, that first one; where a sequence never observes
    the feature, ``fallback[F]``). Observed entries are their own value."""
    last, following = _steps(seen)
    source = np.where(last >= 0, last, following)
    return np.where(source < seen.shape[1], _at(values, source), fallback)


def interpolate(values: np.ndarray, seen: np.ndarray, fallback: np.ndarray, categorical: bool = False) -> np.ndarray:
    """``[N, T, F]`` sequences with each entry linearly interpolated in time between the
    observed steps before and after it in its sequence and feature (categorical codes: the
    nearer of the two, the earlier on a tie); before the first or after the last observation
    the nearest observed value; where a sequence never observes the feature, ``fallback[F]``."""
    last, following = _steps(seen)
    before, after = _at(values, last), _at(values, following)
    t = np.arange(seen.shape[1])[None, :, None]
    gap = np.maximum(following - last, 1)
    if categorical:
        between = np.where(t - last <= following - t, before, after)
    else:
        between = before + (t - last) / gap * (after - before)
    out = np.where(last < 0, after, np.where(following >= seen.shape[1], before, between))
    return np.where((last < 0) & (following >= seen.shape[1]), fallback, out)


def _fallback(x: np.ndarray, seen: np.ndarray, categorical: bool) -> np.ndarray:
    """Per feature of ``[rows, F]``: the mean (numeric) or most frequent value (categorical)
    of the observed entries; 0 for a feature with none."""
    out = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        kept = x[seen[:, j], j]
        if len(kept):
            out[j] = np.bincount(kept.astype(int)).argmax() if categorical else kept.mean()
    return out


def baseline_fills(held: Batch) -> dict[str, dict[str, torch.Tensor]]:
    """Per modality, the simple fills of its unobserved entries from what ``held`` observes:
    ``mean`` (numeric) or ``mode`` (categorical) of each feature for a static modality,
    ``interpolation`` and ``locf`` along time within each sequence for a sequential one (see
    :func:`interpolate` and :func:`locf`; padding after a short sequence is filled too, and
    never scored). Observed entries keep their values."""
    fills = {}
    for m in held.schema:
        x, seen = features(held, m.name).astype(np.float64), features(held, m.name, held.observed[m.name])
        fallback = _fallback(x, seen, m.categorical)
        values = held.values[m.name]
        if m.sequential:
            n, steps = values.shape[:2]
            x, seen = x.reshape(n, steps, -1), seen.reshape(n, steps, -1)
            guesses = {"interpolation": interpolate(x, seen, fallback, m.categorical), "locf": locf(x, seen, fallback)}
        else:
            guesses = {"mode" if m.categorical else "mean": np.where(seen, x, fallback)}
        fills[m.name] = {b: torch.as_tensor(g.reshape(values.shape)).to(values.dtype) for b, g in guesses.items()}
    return fills


def baseline_scores(truth: Batch, held: Batch, fills: dict[str, dict[str, torch.Tensor]] | None = None
                    ) -> dict[str, dict[str, dict[str, float]]]:
    """Per modality with hidden entries (observed in ``truth``, not in ``held``), per
    baseline of ``fills`` (default: :func:`baseline_fills` of ``held``): its scores on those
    entries, as :func:`imputation_scores` gives them (without the count of entries)."""
    scores = {}
    for name, fill in (baseline_fills(held) if fills is None else fills).items():
        found = {b: _modality_scores(truth, held, name, values) for b, values in fill.items()}
        if all(f is not None for f in found.values()):
            scores[name] = {b: {k: v for k, v in f.items() if k != "entries"} for b, f in found.items()}
    return scores


def with_baselines(scores: dict[str, dict], truth: Batch, held: Batch) -> dict[str, dict]:
    """``scores`` (of :func:`imputation_scores`), each modality's completed with
    ``baselines`` (:func:`baseline_scores`) and ``worse_than``: the baselines whose
    :func:`metric` the imputation does not beat."""
    for name, found in baseline_scores(truth, held).items():
        key = metric(scores[name])
        scores[name]["baselines"] = found
        scores[name]["worse_than"] = [b for b, s in found.items() if worse(scores[name][key], s[key])]
    return scores


def column_scores(evaluation: Evaluation, labels: dict[str, list] | None = None) -> list[dict]:
    """One record per feature (column) with hidden entries: its ``modality``, ``column``
    (from ``labels``, a modality's column names, else ``name[j]``), the ``entries`` scored,
    the :func:`metric` (``nrmse`` or ``pfc``), its value for the imputation (``model``) and
    for each of the ``baselines``, and ``worse_than``."""
    e, records = evaluation, []
    fills = baseline_fills(e.held)
    for m in e.truth.schema:
        seen, kept = features(e.truth, m.name, e.truth.observed[m.name]), features(e.held, m.name, e.held.observed[m.name])
        names = (labels or {}).get(m.name) or ([m.name] if not m.shape else [f"{m.name}[{j}]" for j in range(m.size)])
        true = np.where(seen, features(e.truth, m.name), np.nan)
        guesses = {"model": features(e.truth, m.name, e.imputed.values[m.name]),
                   **{b: features(e.truth, m.name, v) for b, v in fills[m.name].items()}}
        for j, column in enumerate(names):
            rows = seen[:, j] & ~kept[:, j]
            if not rows.any():
                continue
            found = {}
            for who, guess in guesses.items():
                if m.categorical:
                    found[who] = float(np.mean(guess[rows, j] != true[rows, j]))
                else:
                    found[who] = nrmse(guess[:, j], true[:, j], rows) if np.nanstd(true[:, j]) > 0 else float("nan")
            model = found.pop("model")
            records.append({"modality": m.name, "column": column, "entries": int(rows.sum()),
                            "metric": "pfc" if m.categorical else "nrmse", "model": model, "baselines": found,
                            "worse_than": [b for b, v in found.items() if worse(model, v)]})
    return records


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
    return Evaluation(truth, held, imputed, with_baselines(scores, truth, held))


def draw_imputations(model: Model, batch: Batch, draws: int, samples: int = 100, seed: int = 0) -> list[Batch]:
    """``model.draw_imputations`` (see :meth:`Model.draw_imputations`) from the random state
    ``seed``, on the CPU."""
    torch.manual_seed(seed)
    return [b.to("cpu") for b in model.draw_imputations(batch, draws, samples)]
