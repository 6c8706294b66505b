"""Time-series imputation measured as TSI-Bench measures it, and the JapaneseVowels case.

TSI-Bench (the PyPOTS authors' benchmark): artificial masks on top of whatever is missing,
MAE, MSE and MRE (sum |error| / sum |truth|) on the artificially masked entries only, the
mean ± SD over mask seeds. Patterns, inside each sequence's own length:

- ``point 10%`` / ``point 50%``: that fraction of the observed entries, uniformly;
- ``subsequence``: per channel, one run of 20% of the sequence's length at a random start;
- ``block``: one run of 20% of the length across all channels.

Data: JapaneseVowels (``load_japanese_vowels``: 270 training, 370 test utterances of 7-29
steps, 12 standardised LPC coefficients as two modalities of 6; Gaussian of scale 0.1) and
BasicMotions (``load_basic_motions``: 40 training, 40 test sequences of 100 steps, the
accelerometer and gyroscope, 3 axes each; Gaussian of scale 0.1, as its learned scale left
MDMM at the mean's error; the models at
benchmarks/sequences.py's size and training options: latent 8, hidden 64, transition 32,
batch 16, weight decay 1e-4, gradients clipped at 50, 20 epochs of KL warm-up; lr 1e-3, as
MDMM's loss diverged at 3e-3).
Methods: the per-channel mean and median of the test set's observed entries, LOCF (the first
observation carried backward before it), linear interpolation (held constant beyond the
observed span), and the models, trained once on the training utterances (seed 0) and
scored on every mask: MDMM (BFVI) and DKS B-Mask (on JapaneseVowels latent 16, hidden
(64, 64), transition 64, batch 128, Adam at lr 3e-3), fills decoded from the smoothing / inference network's mean path; MDMM
also with ``partial="drop"`` (the experts of partly observed steps left out) on the same
weights; on JapaneseVowels MDMM also with ``partial="mask"`` (each encoder reads its
modality's values with the hidden entries zeroed beside the entry mask) and
``entry_drop=0.3`` (in training each sequence's input entries hidden at a rate drawn in
[0, 0.3]), with ``transition_identity`` (the gated transitions' linear path starting at
the identity), and with both; ``--models`` trains only the named ones.

The JapaneseVowels case: 25% of the interior steps of each test utterance (not its first or
last) deleted in both modalities, MSE on those steps. With ``--diagnose`` it also trains
MDMM as shipped (latent 5, hidden 20, lr 1e-3) and at latent 16 / hidden 64, each with
unit-scale Gaussian noise and with scale 0.1, and reports where the information at a deleted
step goes: the transition's std, the per-step KL, the encoders' std, the reconstruction of
observed against deleted steps, filtering against smoothing.

    python -m benchmarks.tsi [--dataset JapaneseVowels|BasicMotions] [--epochs 200] [--seeds 3]
    python -m benchmarks.tsi --diagnose [--epochs 100]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

import polymodal as pm
from benchmarks.results import Run, record_options
from benchmarks.sequences import interpolate, locf
from polymodal.gaussian import Gaussian, kl_divergence

FIGURES = Path(__file__).parent / "figures"
PATTERNS = ("point 10%", "point 50%", "subsequence", "block")
WIDE = {"latent_dim": 16, "hidden": (64, 64), "transition_hidden": 64}
MASKED = {"partial": "mask", "entry_drop": 0.3}  # the encoders read the entry mask, trained on partly observed steps
IDENTITY = {"transition_identity": True}  # the gated transitions' linear path starts as the identity
NARROW = {"latent_dim": 8, "hidden": (64,), "transition_hidden": 32}  # benchmarks/sequences.py's
DATASETS = {  # record and figure name, loader, models, training options
    "JapaneseVowels": ("japanese_vowels", pm.load_japanese_vowels, {"MDMM (BFVI)": ("MDMM", WIDE),
                                                 "MDMM (BFVI), masked encoder": ("MDMM", {**WIDE, **MASKED}),
                                                 "MDMM (BFVI), identity transition": ("MDMM", {**WIDE, **IDENTITY}),
                                                 "MDMM (BFVI), masked encoder, identity transition":
                                                     ("MDMM", {**WIDE, **MASKED, **IDENTITY}),
                                                 "DKS B-Mask": ("DKS", {**WIDE, "direction": "backward", "rnn_hidden": 64})},
                       {"lr": 3e-3}),
    "BasicMotions": ("basic_motions", lambda: pm.load_basic_motions(label=None, validation=0, likelihood=NOISE),
                     {"MDMM (BFVI)": ("MDMM", NARROW),
                      "DKS B-Mask": ("DKS", {**NARROW, "direction": "backward", "rnn_hidden": 32})},
                     {"lr": 1e-3, "batch_size": 16, "weight_decay": 1e-4, "clip_grad": 50.0, "kl_warmup": 20}),
}
UNIT = {"name": "gaussian", "scale": 1.0}
NOISE = {"name": "gaussian", "scale": 0.1}
SHOWN = 0  # the test utterance of the figure


def channels(batch: pm.Batch) -> list[str]:
    """The modalities imputed: the sequential numeric ones."""
    return [m.name for m in batch.schema if m.sequential and not m.categorical]


def pattern(test: pm.Batch, name: str, seed: int) -> np.ndarray:
    """``[B, T, C]``: the entries an artificial mask of pattern ``name`` hides."""
    g = np.random.default_rng(seed)
    observed = values(test)[1]
    lengths = observed.any(-1).sum(1)
    if name.startswith("point"):
        return observed & (g.random(observed.shape) < float(name.split()[1].rstrip("%")) / 100)
    hidden = np.zeros_like(observed)
    for i, length in enumerate(lengths):
        run = max(1, int(0.2 * length))
        starts = g.integers(0, length - run + 1, size=observed.shape[2] if name == "subsequence" else 1)
        for c in range(observed.shape[2]):
            start = starts[c if name == "subsequence" else 0]
            hidden[i, start : start + run, c] = True
    return observed & hidden


def interior(test: pm.Batch, seed: int = 0) -> np.ndarray:
    """``[B, T, C]``: 25% of each sequence's interior steps (not its first or last), all channels."""
    g = np.random.default_rng(seed)
    observed = values(test)[1]
    lengths = observed.all(-1).sum(1)
    hidden = np.zeros_like(observed)
    for i, length in enumerate(lengths):
        hidden[i, 1 + g.choice(length - 2, max(1, round(0.25 * (length - 2))), replace=False)] = True
    return hidden


def hide(test: pm.Batch, hidden: np.ndarray) -> pm.Batch:
    names = channels(test)
    masks = torch.from_numpy(~hidden).split([test.schema[n].shape[0] for n in names], -1)
    return test.with_observed({n: test.observed[n] & mask for n, mask in zip(names, masks)})


def values(batch: pm.Batch) -> tuple[np.ndarray, np.ndarray]:
    names = channels(batch)
    return (np.concatenate([batch.values[n].numpy() for n in names], -1),
            np.concatenate([batch.observed[n].numpy() for n in names], -1))


def lengths(test: pm.Batch) -> np.ndarray:
    """``[B]``: each sequence's length before any step is hidden (hiding its last steps does not shorten it)."""
    return values(test)[1].any(-1).sum(1)


def per_channel(batch: pm.Batch, fill, lengths: np.ndarray) -> np.ndarray:
    """``fill(values [T], observed [T])`` on every channel of every sequence, within its length."""
    x, observed = values(batch)
    out = x.copy()
    for i, length in enumerate(lengths):
        for c in range(x.shape[2]):
            o = observed[i, :length, c]
            if o.any():
                out[i, :length, c] = fill(x[i, :length, c], o)
    return out


def pooled(statistic):
    def fill(batch: pm.Batch, lengths: np.ndarray) -> np.ndarray:
        x, observed = values(batch)
        centre = np.array([statistic(x[..., c][observed[..., c]]) for c in range(x.shape[2])])
        return np.where(observed, x, centre)

    return fill


BASELINES = {
    "mean": pooled(np.mean),
    "median": pooled(np.median),
    "LOCF": lambda batch, lengths: per_channel(batch, locf, lengths),
    "linear interpolation": lambda batch, lengths: per_channel(batch, interpolate, lengths),
}


def scores(filled: np.ndarray, truth: np.ndarray, hidden: np.ndarray) -> dict[str, float]:
    error, scale = (filled - truth)[hidden], np.abs(truth[hidden])
    return {"MAE": float(np.abs(error).mean()), "MSE": float((error**2).mean()), "MRE": float(np.abs(error).sum() / scale.sum())}


def train(kind: str, options: dict, data: pm.Batch, epochs: int, **training) -> tuple[pm.models.base.Model, float]:
    torch.manual_seed(0)
    model = pm.MODELS[kind.lower()](data.schema, **options)
    history = pm.Trainer(model, epochs=epochs, seed=0, progress=False, **training).fit(data)
    return model, float(np.median([h["seconds"] for h in history]))


def model_fill(model) -> callable:
    """The model's fill (it reads each sequence's length from its observed steps)."""
    return lambda batch, lengths: values(model.impute(batch))[0]


def diagnosis(model, test: pm.Batch, hidden: np.ndarray) -> dict[str, float]:
    """Where the information at a deleted step goes, on the JapaneseVowels case."""
    inputs = hide(test, hidden)
    deleted = torch.from_numpy(hidden.any(-1))
    seen = torch.from_numpy(values(inputs)[1].all(-1))
    truth = values(test)[0]
    with torch.no_grad():
        q = model.encode(inputs)  # smoothing posteriors along the mean path
        decoded = np.concatenate([model.decode(q.mean)[n].mean.numpy() for n in channels(test)], -1)
        prior = model.transition(q.mean[:, :-1])  # p(z_t | z_{t-1}) along the path
        kl = kl_divergence(Gaussian(q.mean[:, 1:], q.var[:, 1:]), prior)
        expert = model.transitions["fwd"](q.mean).var.sqrt()
        encoders = model.evidence(inputs, torch.ones(1, 2, dtype=torch.bool)).precision[0].rsqrt()
        filtered = np.concatenate([model.decode(model.filter(inputs).mean)[n].mean.numpy() for n in channels(test)], -1)
    return {
        "observed steps' reconstruction MSE": float(((decoded - truth) ** 2)[seen.numpy()].mean()),
        "deleted steps' MSE (smoothing)": float(((decoded - truth) ** 2)[hidden].mean()),
        "deleted steps' MSE (filtering)": float(((filtered - truth) ** 2)[hidden].mean()),
        "transition std of p(z_t given z_t-1)": float(prior.var.sqrt().mean()),
        "share of transition stds at the floor (< 2x)": float((expert < 2 * model.config.transition_min_std).float().mean()),
        "encoders' std at observed steps": float(encoders[seen].mean()),
        "KL per observed step (nats)": float(kl[seen[:, 1:]].mean()),
        "KL per deleted step (nats)": float(kl[deleted[:, 1:]].mean()),
    }


def figure(test: pm.Batch, hidden: np.ndarray, fills: dict[str, np.ndarray], title: str, path: Path) -> Path:
    """Test utterance ``SHOWN``, its first two coefficients: truth, the hidden entries and every fill."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, observed = values(test)
    length = int(observed[SHOWN].any(-1).sum())
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for c, ax in enumerate(axes):
        steps = np.arange(length)
        ax.plot(steps, truth[SHOWN, :length, c], color="black", lw=2, label="truth")
        gone = hidden[SHOWN, :length, c]
        ax.scatter(steps[gone], truth[SHOWN, :length, c][gone], s=60, facecolors="none", edgecolors="red", label="hidden",
                   zorder=3)
        for name, fill in fills.items():
            ax.plot(steps, fill[SHOWN, :length, c], lw=1, label=name)
        ax.set_ylabel(f"channel {c + 1} (standardised)")
    axes[0].set_title(title)
    axes[0].legend(ncol=4, fontsize=7)
    axes[1].set_xlabel("step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def protocol(run: Run, dataset: str, epochs: int, seeds: int, only: list[str] | None = None) -> None:
    slug, load, models, training = DATASETS[dataset]
    models = {name: spec for name, spec in models.items() if only is None or name in only}
    data, _, test = load()
    truth, size = values(test)[0], lengths(test)
    methods = dict(BASELINES)
    run.table("seconds per epoch", "median over the epochs of the one training run, this machine")
    for name, (kind, options) in models.items():
        start = time.perf_counter()
        model, epoch_s = train(kind, options, data, epochs, **training)
        run.add("seconds per epoch", row=name, column=dataset, value=epoch_s)
        run.note(f"{name}: trained {epochs} epochs in {time.perf_counter() - start:.0f} s")
        methods[name] = model_fill(model)
        if kind == "MDMM" and model.config.partial == "zeros":  # the same weights, partly observed steps' experts left out
            dropped = copy.copy(model)
            dropped.config = dataclasses.replace(model.config, partial="drop")
            methods[f"{name}, partial steps dropped"] = model_fill(dropped)
    for p in PATTERNS:
        for seed in range(5 if p == "point 10%" else seeds):
            hidden = pattern(test, p, seed)
            inputs = hide(test, hidden)
            fills = {name: fill(inputs, size) for name, fill in methods.items()}
            for name, filled in fills.items():
                for metric, value in scores(filled, truth, hidden).items():
                    run.add(f"{dataset} {metric}", row=name, column=p, value=value, seed=seed)
            if p == "block" and seed == 0:
                title = f"{dataset}, block pattern: test sequence {SHOWN}"
                path = figure(test, hidden, fills, title, FIGURES / f"tsi_{slug}.png")
                run.figure(path, f"{dataset}, block of 20% of the steps hidden across all channels: each method's fill")
    hidden = interior(test)
    inputs = hide(test, hidden)
    for name, fill in methods.items():
        run.add(f"{dataset}, 25% of interior steps deleted (MSE)", row=name, column=f"{epochs} epochs",
                value=scores(fill(inputs, size), truth, hidden)["MSE"], seed=0)


def diagnose(run: Run, epochs: int) -> None:
    variants = {
        "MDMM as shipped, unit noise": ("MDMM", {}, UNIT, 1e-3),
        "MDMM 16/64, unit noise": ("MDMM", WIDE, UNIT, 3e-3),
        "MDMM as shipped, noise 0.1": ("MDMM", {}, None, 1e-3),
        "MDMM 16/64, noise 0.1": ("MDMM", WIDE, None, 3e-3),
    }
    fills = {}
    for name, (kind, options, likelihood, lr) in variants.items():
        data, _, test = pm.load_japanese_vowels(**({"likelihood": likelihood} if likelihood else {}))
        hidden = interior(test)
        model, _ = train(kind, options, data, epochs, lr=lr)
        for metric, value in diagnosis(model, test, hidden).items():
            run.add("where a deleted step's information goes", row=metric, column=name, value=value, seed=0)
        fills[name] = model_fill(model)(hide(test, hidden), lengths(test))
    fills["linear interpolation"] = BASELINES["linear interpolation"](hide(test, hidden), lengths(test))
    path = figure(test, hidden, fills, f"JapaneseVowels, 25% of interior steps deleted: test utterance {SHOWN}",
                  FIGURES / "tsi_vowels_diagnosis.png")
    run.figure(path, "JapaneseVowels, 25% of interior steps deleted: each MDMM variant's fill and linear interpolation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 200; 100 with --diagnose)")
    parser.add_argument("--seeds", type=int, default=3, help="mask seeds of every pattern but point 10%% (which has 5)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="JapaneseVowels")
    parser.add_argument("--models", nargs="+", help="train only these of the dataset's models (default: all)")
    parser.add_argument("--diagnose", action="store_true", help="the MDMM variants of the JapaneseVowels case instead")
    args = record_options(parser).parse_args()
    torch.set_num_threads(1)
    if args.diagnose:
        epochs = args.epochs or 100
        run = Run("tsi", args, title="JapaneseVowels: where MDMM loses a deleted step",
                  description=(__doc__.split("\n\n")[4] + f" {epochs} epochs, batch 128, seed 0, one run per variant."))
        diagnose(run, epochs)
        run.save(args.record or "diagnosis")
    else:
        epochs = args.epochs or 200
        run = Run("tsi", args, title="Time-series imputation, TSI-Bench's protocol",
                  description=" ".join(__doc__.split("\n\n")[1:4]).replace("\n", " "))
        protocol(run, args.dataset, epochs, args.seeds, args.models)
        run.save(args.record or ("default" if args.dataset == "JapaneseVowels" else DATASETS[args.dataset][0]))


if __name__ == "__main__":
    main()
