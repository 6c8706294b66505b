"""Time-series imputation measured as TSI-Bench measures it, and the JapaneseVowels case.

TSI-Bench (the PyPOTS authors' benchmark): artificial masks on top of whatever is missing,
MAE, MSE and MRE (sum |error| / sum |truth|) on the artificially masked entries only, the
mean ± SD over mask seeds. Patterns, inside each sequence's own length:

- ``point 10%`` / ``point 50%``: that fraction of the observed entries, uniformly;
- ``subsequence``: per channel, one run of 20% of the sequence's length at a random start;
- ``block``: one run of 20% of the length across all channels.

Data: JapaneseVowels (``load_japanese_vowels``: 270 training, 370 test utterances of 7-29
steps, 12 standardised LPC coefficients as two modalities of 6; Gaussian of scale 0.1).
Methods: the per-channel mean and median of the test set's observed entries, LOCF (the first
observation carried backward before it), linear interpolation (held constant beyond the
observed span), and the models, trained once on the training utterances (seed 0) and
scored on every mask: MDMM (BFVI) and DKS B-Mask, latent 16, hidden (64, 64), transition 64,
Adam at lr 3e-3, batch 128, fills decoded from the smoothing / inference network's mean path.

The JapaneseVowels case: 25% of the interior steps of each test utterance (not its first or
last) deleted in both modalities, MSE on those steps. With ``--diagnose`` it also trains
MDMM as shipped (latent 5, hidden 20, lr 1e-3) and at latent 16 / hidden 64, each with
unit-scale Gaussian noise and with scale 0.1, and reports where the information at a deleted
step goes: the transition's std, the per-step KL, the encoders' std, the reconstruction of
observed against deleted steps, filtering against smoothing.

    python -m benchmarks.tsi [--epochs 200] [--seeds 3]
    python -m benchmarks.tsi --diagnose [--epochs 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import polymodal as pm
from benchmarks.results import Run
from benchmarks.sequences import interpolate, locf
from polymodal.gaussian import Gaussian, kl_divergence

BANDS = ("lpc_low", "lpc_high")
FIGURES = Path(__file__).parent / "figures"
PATTERNS = ("point 10%", "point 50%", "subsequence", "block")
WIDE = {"latent_dim": 16, "hidden": (64, 64), "transition_hidden": 64}
MODELS = {"MDMM (BFVI)": ("MDMM", WIDE), "DKS B-Mask": ("DKS", {**WIDE, "direction": "backward", "rnn_hidden": 64})}
UNIT = {"name": "gaussian", "scale": 1.0}
SHOWN = 0  # the test utterance of the figure


def pattern(test: pm.Batch, name: str, seed: int) -> np.ndarray:
    """``[B, T, 12]``: the entries an artificial mask of pattern ``name`` hides."""
    g = np.random.default_rng(seed)
    observed = np.concatenate([test.observed[n].numpy() for n in BANDS], -1)
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
    """``[B, T, 12]``: 25% of each utterance's interior steps (not its first or last), all channels."""
    g = np.random.default_rng(seed)
    lengths = test.observed["lpc_low"].all(-1).sum(1).numpy()
    hidden = np.zeros((*test.observed["lpc_low"].shape[:2], 12), dtype=bool)
    for i, length in enumerate(lengths):
        hidden[i, 1 + g.choice(length - 2, max(1, round(0.25 * (length - 2))), replace=False)] = True
    return hidden


def hide(test: pm.Batch, hidden: np.ndarray) -> pm.Batch:
    mask = torch.from_numpy(~hidden)
    return test.with_observed({n: test.observed[n] & mask[..., 6 * k : 6 * k + 6] for k, n in enumerate(BANDS)})


def values(batch: pm.Batch) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([batch.values[n].numpy() for n in BANDS], -1),
            np.concatenate([batch.observed[n].numpy() for n in BANDS], -1))


def per_channel(batch: pm.Batch, fill) -> np.ndarray:
    """``fill(values [T], observed [T])`` on every channel of every sequence, within its length."""
    x, observed = values(batch)
    lengths = observed.any(-1).sum(1)
    out = x.copy()
    for i, length in enumerate(lengths):
        for c in range(x.shape[2]):
            o = observed[i, :length, c]
            if o.any():
                out[i, :length, c] = fill(x[i, :length, c], o)
    return out


def pooled(statistic):
    def fill(batch: pm.Batch) -> np.ndarray:
        x, observed = values(batch)
        centre = np.array([statistic(x[..., c][observed[..., c]]) for c in range(x.shape[2])])
        return np.where(observed, x, centre)

    return fill


BASELINES = {
    "mean": pooled(np.mean),
    "median": pooled(np.median),
    "LOCF": lambda batch: per_channel(batch, locf),
    "linear interpolation": lambda batch: per_channel(batch, interpolate),
}


def scores(filled: np.ndarray, truth: np.ndarray, hidden: np.ndarray) -> dict[str, float]:
    error, scale = (filled - truth)[hidden], np.abs(truth[hidden])
    return {"MAE": float(np.abs(error).mean()), "MSE": float((error**2).mean()), "MRE": float(np.abs(error).sum() / scale.sum())}


def train(kind: str, options: dict, data: pm.Batch, epochs: int, lr: float = 3e-3) -> tuple[pm.models.base.Model, float]:
    torch.manual_seed(0)
    model = pm.MODELS[kind.lower()](data.schema, **options)
    history = pm.Trainer(model, epochs=epochs, lr=lr, seed=0, progress=False).fit(data)
    return model, float(np.median([h["seconds"] for h in history]))


def model_fill(model) -> callable:
    return lambda batch: values(model.impute(batch))[0]


def diagnosis(model, test: pm.Batch, hidden: np.ndarray) -> dict[str, float]:
    """Where the information at a deleted step goes, on the JapaneseVowels case."""
    inputs = hide(test, hidden)
    deleted = torch.from_numpy(hidden.any(-1))
    seen = inputs.observed["lpc_low"].all(-1) & ~deleted
    truth = values(test)[0]
    with torch.no_grad():
        q = model.encode(inputs)  # smoothing posteriors along the mean path
        decoded = np.concatenate([model.decode(q.mean)[n].mean.numpy() for n in BANDS], -1)
        prior = model.transition(q.mean[:, :-1])  # p(z_t | z_{t-1}) along the path
        kl = kl_divergence(Gaussian(q.mean[:, 1:], q.var[:, 1:]), prior)
        expert = model.transitions["fwd"](q.mean).var.sqrt()
        encoders = model.evidence(inputs, torch.ones(1, 2, dtype=torch.bool)).precision[0].rsqrt()
        filtered = np.concatenate([model.decode(model.filter(inputs).mean)[n].mean.numpy() for n in BANDS], -1)
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
        ax.set_ylabel(f"coefficient {c + 1} (standardised)")
    axes[0].set_title(title)
    axes[0].legend(ncol=4, fontsize=7)
    axes[1].set_xlabel("step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def protocol(run: Run, epochs: int, seeds: int) -> None:
    data, _, test = pm.load_japanese_vowels()
    truth = values(test)[0]
    methods = dict(BASELINES)
    run.table("seconds per epoch", "median over the epochs of the one training run, this machine")
    for name, (kind, options) in MODELS.items():
        start = time.perf_counter()
        model, epoch_s = train(kind, options, data, epochs)
        run.add("seconds per epoch", row=name, column="JapaneseVowels", value=epoch_s)
        run.note(f"{name}: trained {epochs} epochs in {time.perf_counter() - start:.0f} s")
        methods[name] = model_fill(model)
    for p in PATTERNS:
        for seed in range(5 if p == "point 10%" else seeds):
            hidden = pattern(test, p, seed)
            inputs = hide(test, hidden)
            fills = {name: fill(inputs) for name, fill in methods.items()}
            for name, filled in fills.items():
                for metric, value in scores(filled, truth, hidden).items():
                    run.add(f"JapaneseVowels {metric}", row=name, column=p, value=value, seed=seed)
            if p == "block" and seed == 0:
                path = figure(test, hidden, fills, f"JapaneseVowels, block pattern: test utterance {SHOWN}",
                              FIGURES / "tsi_japanese_vowels.png")
                run.figure(path, "JapaneseVowels, block of 20% of the steps hidden across all channels: each method's fill")
    hidden = interior(test)
    inputs = hide(test, hidden)
    for name, fill in methods.items():
        run.add("JapaneseVowels, 25% of interior steps deleted (MSE)", row=name, column=f"{epochs} epochs",
                value=scores(fill(inputs), truth, hidden)["MSE"], seed=0)


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
        model, _ = train(kind, options, data, epochs, lr)
        for metric, value in diagnosis(model, test, hidden).items():
            run.add("where a deleted step's information goes", row=metric, column=name, value=value, seed=0)
        fills[name] = model_fill(model)(hide(test, hidden))
    fills["linear interpolation"] = BASELINES["linear interpolation"](hide(test, hidden))
    path = figure(test, hidden, fills, f"JapaneseVowels, 25% of interior steps deleted: test utterance {SHOWN}",
                  FIGURES / "tsi_vowels_diagnosis.png")
    run.figure(path, "JapaneseVowels, 25% of interior steps deleted: each MDMM variant's fill and linear interpolation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 200; 100 with --diagnose)")
    parser.add_argument("--seeds", type=int, default=3, help="mask seeds of every pattern but point 10%% (which has 5)")
    parser.add_argument("--diagnose", action="store_true", help="the MDMM variants of the JapaneseVowels case instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.diagnose:
        epochs = args.epochs or 100
        run = Run("tsi", args, title="JapaneseVowels: where MDMM loses a deleted step",
                  description=(__doc__.split("\n\n")[4] + f" {epochs} epochs, batch 128, seed 0, one run per variant."))
        diagnose(run, epochs)
        run.save("diagnosis")
    else:
        epochs = args.epochs or 200
        run = Run("tsi", args, title="Time-series imputation, TSI-Bench's protocol",
                  description=" ".join(__doc__.split("\n\n")[1:4]).replace("\n", " "))
        protocol(run, epochs, args.seeds)
        run.save()


if __name__ == "__main__":
    main()
