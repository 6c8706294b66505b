"""Time-series imputation measured as TSI-Bench measures it, and the JapaneseVowels case.

TSI-Bench (the PyPOTS authors' benchmark): artificial masks on top of whatever is missing,
MAE, MSE and MRE (sum |error| / sum |truth|) on the artificially masked entries only, the
mean ± SD over mask seeds. Patterns, inside each sequence's own length (up to its last
observed step):

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
observed span), and the models, trained once on the training utterances (seed 0, or ``--train-seed``) and
scored on every mask: MDMM (BFVI) and DKS B-Mask (on JapaneseVowels latent 16, hidden
(64, 64), transition 64, batch 128, Adam at lr 3e-3), fills decoded from the smoothing / inference network's mean path; MDMM
also with ``partial="drop"`` (the experts of partly observed steps left out) on the same
weights; on JapaneseVowels MDMM also with ``partial="mask"`` (each encoder reads its
modality's values with the hidden entries zeroed beside the entry mask) and
``entry_drop=0.3`` (in training each sequence's input entries hidden at a rate drawn in
[0, 0.3]), with ``transition_identity`` (the gated transitions' linear path starting at
the identity, the library's default), and with both; ``--models`` trains only the named
ones. The models not named with "identity transition" start their transitions at random, as
the reference code does (``transition_identity=False``).

PhysioNet and MotionSense come from the data files of the imputegap package (installed
without its dependencies in the benchmark environment). PhysioNet: the PhysioNet/CinC 2012
excerpt of SAITS' preprocessing (``z_physionet_saits.txt``: 163 ICU stays x 48 hours, 78% of
the entries missing by nature; its 38 columns are the 37 time series of
``polymodal.datasets.physionet.VARIABLES`` and RecordID, in pandas' sorted order; MechVent,
1 wherever observed, is left out), the stays split at random (seed 0) into 130 to train and
33 to test, the 36 variables standardised with the training stays' observed entries and
grouped into six modalities of what is measured together (bedside vitals, invasive and
non-invasive blood pressure, blood gases, the chemistry panel, the liver and cardiac
panel). MotionSense (``motion.txt``: 10,000 steps x 20 channels at 50 Hz, complete, each
column already z-scored; the file does not name its columns and they are not the four
sensors' 3 axes (12): by their correlations they form groups of 6, 6, 6 and 2 columns, one
modality each): windows of 100 steps in time order, the first 80 to train and the last 20
to test, standardised with the training windows. The models on PhysioNet at latent 32, hidden
128, transition 64 (DKS: RNN 64), lr 3e-3; on MotionSense at latent 8, hidden 64, transition
32 (DKS: RNN 32), lr 1e-3 (at PhysioNet's sizes MDMM's loss diverged there, at lr 3e-3 and at
1e-3); on both batch 32, weight decay 1e-4, gradients clipped at 50, 10 epochs of KL warm-up,
and MDMM also with the masked encoders (``partial="mask"``, ``entry_drop=0.3``) and
``transition_identity``.

With ``--pypots``, PyPOTS' SAITS (2 layers, d_model 256, 4 heads, d_k = d_v = 64, d_ffn 128,
dropout 0.1, PyPOTS' README), BRITS (RNN hidden 128) and CSDI (the CSDI paper's: 4 layers,
64 channels, 8 heads, time / feature / diffusion embeddings 128 / 16 / 128, 50 diffusion
steps; the mean of ``--csdi-samples`` samples) train on the same training sequences, NaN
where unobserved, batch 32, Adam at lr 1e-3, no validation set (PyPOTS then keeps the epoch
of the lowest training loss), the same seed, for the same ``--epochs`` as MDMM and DKS (CSDI for
``--csdi-epochs``). CSDI imputes only the patterns of ``--csdi-patterns`` (its sampling runs
the network 50 times per mask; none: trained for its seconds per epoch only).
Seconds per epoch are CPU seconds of the whole training divided by the epochs, one
torch thread, every model in the same run.

The JapaneseVowels case: 25% of the interior steps of each test utterance (not its first or
last) deleted in both modalities, MSE on those steps. With ``--diagnose`` it also trains
MDMM as shipped (latent 5, hidden 20, lr 1e-3) and at latent 16 / hidden 64, each with
unit-scale Gaussian noise and with scale 0.1, and reports where the information at a deleted
step goes: the transition's std, the per-step KL, the encoders' std, the reconstruction of
observed against deleted steps, filtering against smoothing.

    python -m benchmarks.tsi [--dataset JapaneseVowels|BasicMotions|PhysioNet|MotionSense] [--epochs 200] [--seeds 3]
        [--pypots SAITS BRITS CSDI]
    python -m benchmarks.tsi --diagnose [--epochs 100]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.resources
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import polymodal as pm
from benchmarks.results import Run, record_options
from benchmarks.sequences import interpolate, locf
from polymodal.datasets.physionet import HOURS, VARIABLES
from polymodal.gaussian import Gaussian, kl_divergence

PATTERNS = ("point 10%", "point 50%", "subsequence", "block")
# The sizes of the models; their transitions start at random (the reference's), IDENTITY overrides.
WIDE = {"latent_dim": 16, "hidden": (64, 64), "transition_hidden": 64, "transition_identity": False}
MASKED = {"partial": "mask", "entry_drop": 0.3}  # the encoders read the entry mask, trained on partly observed steps
IDENTITY = {"transition_identity": True}  # the gated transitions' linear path starts as the identity
NARROW = {"latent_dim": 8, "hidden": (64,), "transition_hidden": 32, "transition_identity": False}  # sequences.py's
UNIT = {"name": "gaussian", "scale": 1.0}
NOISE = {"name": "gaussian", "scale": 0.1}
# PhysioNet's variables grouped by what is measured together (one modality each)
PHYSIONET_GROUPS = {
    "vitals": ("HR", "RespRate", "Temp", "GCS", "Urine", "Weight"),
    "invasive_bp": ("DiasABP", "MAP", "SysABP"),
    "noninvasive_bp": ("NIDiasABP", "NIMAP", "NISysABP"),
    "blood_gas": ("FiO2", "PaCO2", "PaO2", "pH", "SaO2", "Lactate"),
    "chemistry": ("BUN", "Creatinine", "Glucose", "HCO3", "HCT", "K", "Mg", "Na", "Platelets", "WBC"),
    "liver_cardiac": ("ALP", "ALT", "AST", "Albumin", "Bilirubin", "Cholesterol", "TroponinI", "TroponinT"),
}
MOTION_GROUPS = {"c00_05": range(0, 6), "c06_11": range(6, 12), "c12_17": range(12, 18), "c18_19": range(18, 20)}
WINDOW = 100  # MotionSense steps per sequence (2 s at 50 Hz)


def imputegap_file(name: str) -> np.ndarray:
    """One of imputegap's data files (whitespace-separated numbers, ``NaN`` where missing)."""
    try:
        folder = importlib.resources.files("imputegap") / "datasets"
    except ModuleNotFoundError as error:
        raise ImportError(f"this dataset is imputegap's datasets/{name}: install the imputegap package without its "
                          "dependencies in the benchmark environment (pip install --no-deps imputegap; make bench-env)"
                          ) from error
    return np.genfromtxt(folder / name)


def standardised(schema: pm.Schema, groups: dict[str, list[int]], train: np.ndarray,
                 test: np.ndarray) -> tuple[pm.Batch, None, pm.Batch]:
    """``train, None, test`` batches of ``[B, T, C]`` arrays (NaN where missing), each channel
    standardised with the training sequences' observed entries, modality ``m`` the channels ``groups[m]``."""
    mean, sd = np.nanmean(train, axis=(0, 1)), np.nanstd(train, axis=(0, 1))

    def batch(x: np.ndarray) -> pm.Batch:
        scaled = ((x - mean) / sd).astype(np.float32)
        return pm.Batch.from_data(schema, {name: scaled[..., columns] for name, columns in groups.items()})

    return batch(train), None, batch(test)


def sequence_schema(groups: dict[str, list[int]]) -> pm.Schema:
    return pm.Schema([pm.Modality(name, (len(columns),), NOISE, sequential=True) for name, columns in groups.items()])


def load_physionet(seed: int = 0, test_share: float = 0.2) -> tuple[pm.Batch, None, pm.Batch]:
    """The imputegap excerpt of PhysioNet 2012: 163 stays x 48 hours, 36 variables in
    :data:`PHYSIONET_GROUPS`, the stays split at random into training and test."""
    table = imputegap_file("z_physionet_saits.txt")
    columns = sorted(["RecordID", *VARIABLES])  # SAITS' script concatenates with pandas' sorted columns
    if table.shape[1] != len(columns) or len(table) % HOURS:
        raise ValueError(f"z_physionet_saits.txt: expected {len(columns)} columns and stays of {HOURS} rows, got {table.shape}")
    stays = table.reshape(-1, HOURS, len(columns))
    ids, vent = stays[..., columns.index("RecordID")], stays[..., columns.index("MechVent")]
    if not (ids == ids[:, :1]).all() or not np.isin(vent[~np.isnan(vent)], [1]).all():
        raise ValueError("z_physionet_saits.txt: the columns are not RecordID and MechVent where pandas' sorted order puts them")
    names = [v for group in PHYSIONET_GROUPS.values() for v in group]
    x = stays[..., [columns.index(v) for v in names]]
    order = np.random.default_rng(seed).permutation(len(x))
    held = round(test_share * len(x))
    groups, start = {}, 0
    for group, variables in PHYSIONET_GROUPS.items():
        groups[group], start = list(range(start, start + len(variables))), start + len(variables)
    return standardised(sequence_schema(groups), groups, x[np.sort(order[held:])], x[np.sort(order[:held])])


def load_motionsense(train_share: float = 0.8) -> tuple[pm.Batch, None, pm.Batch]:
    """imputegap's MotionSense excerpt cut into windows of :data:`WINDOW` steps, the first
    ``train_share`` of them (in time order) to train, the rest to test."""
    table = imputegap_file("motion.txt")
    x = table[: len(table) // WINDOW * WINDOW].reshape(-1, WINDOW, table.shape[1])
    cut = round(train_share * len(x))
    groups = {name: list(columns) for name, columns in MOTION_GROUPS.items()}
    return standardised(sequence_schema(groups), groups, x[:cut], x[cut:])


# PhysioNet's 36 channels need the latent width: at latent 8, hidden 64 and lr 1e-3 MDMM (masked
# encoder, identity transition) reconstructed the observed entries with MSE 0.39 and filled point
# 10% with MAE 0.64 after 50 epochs (0.27 and 0.56 after 200); at these sizes and lr 3e-3, 0.05 and 0.37.
FIELD = {"latent_dim": 32, "hidden": (128,), "transition_hidden": 64, "transition_identity": False}
FIELD_TRAINING = {"lr": 3e-3, "batch_size": 32, "weight_decay": 1e-4, "clip_grad": 50.0, "kl_warmup": 10}
FIELD_MODELS = {"MDMM (BFVI)": ("MDMM", FIELD),
                "MDMM (BFVI), masked encoder, identity transition": ("MDMM", {**FIELD, **MASKED, **IDENTITY}),
                "DKS B-Mask": ("DKS", {**FIELD, "direction": "backward", "rnn_hidden": 64})}
DATASETS = {  # record and figure name, loader, models, training options, channels of the figure
    "JapaneseVowels": ("japanese_vowels", pm.load_japanese_vowels, {"MDMM (BFVI)": ("MDMM", WIDE),
                                                 "MDMM (BFVI), masked encoder": ("MDMM", {**WIDE, **MASKED}),
                                                 "MDMM (BFVI), identity transition": ("MDMM", {**WIDE, **IDENTITY}),
                                                 "MDMM (BFVI), masked encoder, identity transition":
                                                     ("MDMM", {**WIDE, **MASKED, **IDENTITY}),
                                                 "DKS B-Mask": ("DKS", {**WIDE, "direction": "backward", "rnn_hidden": 64})},
                       {"lr": 3e-3}, (0, 1)),
    "BasicMotions": ("basic_motions", lambda: pm.load_basic_motions(label=None, validation=0, likelihood=NOISE),
                     {"MDMM (BFVI)": ("MDMM", NARROW),
                      "MDMM (BFVI), identity transition": ("MDMM", {**NARROW, **IDENTITY}),
                      "DKS B-Mask": ("DKS", {**NARROW, "direction": "backward", "rnn_hidden": 32})},
                     {"lr": 1e-3, "batch_size": 16, "weight_decay": 1e-4, "clip_grad": 50.0, "kl_warmup": 20}, (0, 3)),
    "PhysioNet": ("physionet", load_physionet, FIELD_MODELS, FIELD_TRAINING, (0, 7)),  # HR, NIMAP
    # narrow, at lr 1e-3: at FIELD's sizes MDMM's loss diverged, in epoch 12 at lr 3e-3 and in epoch 55 at 1e-3
    "MotionSense": ("motionsense", load_motionsense,
                    {"MDMM (BFVI)": ("MDMM", NARROW),
                     "MDMM (BFVI), masked encoder, identity transition": ("MDMM", {**NARROW, **MASKED, **IDENTITY}),
                     "DKS B-Mask": ("DKS", {**NARROW, "direction": "backward", "rnn_hidden": 32})},
                    {**FIELD_TRAINING, "lr": 1e-3}, (0, 12)),
}
INTERIOR = ("JapaneseVowels", "BasicMotions")  # complete data: the interior-steps case applies
PYPOTS = {
    "SAITS": {"n_layers": 2, "d_model": 256, "n_heads": 4, "d_k": 64, "d_v": 64, "d_ffn": 128, "dropout": 0.1},
    "BRITS": {"rnn_hidden_size": 128},
    "CSDI": {"n_layers": 4, "n_heads": 8, "n_channels": 64, "d_time_embedding": 128, "d_feature_embedding": 16,
             "d_diffusion_embedding": 128},
}
SHOWN = 0  # the test utterance of the diagnosis figure


def channels(batch: pm.Batch) -> list[str]:
    """The modalities imputed: the sequential numeric ones."""
    return [m.name for m in batch.schema if m.sequential and not m.categorical]


def pattern(test: pm.Batch, name: str, seed: int) -> np.ndarray:
    """``[B, T, C]``: the entries an artificial mask of pattern ``name`` hides."""
    g = np.random.default_rng(seed)
    observed = values(test)[1]
    if name.startswith("point"):
        return observed & (g.random(observed.shape) < float(name.split()[1].rstrip("%")) / 100)
    hidden = np.zeros_like(observed)
    for i, length in enumerate(lengths(test)):
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
    """``[B]``: each sequence's length, up to its last observed step, before any step is hidden
    (hiding its last steps does not shorten it)."""
    seen = values(test)[1].any(-1)
    return np.where(seen.any(1), seen.shape[1] - seen[:, ::-1].argmax(1), 0)


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
        # a channel with nothing observed falls back on the training mean, 0
        centre = np.array([statistic(v) if (v := x[..., c][observed[..., c]]).size else 0.0 for c in range(x.shape[2])])
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


def train(kind: str, options: dict, data: pm.Batch, epochs: int, seed: int = 0,
          **training) -> tuple[pm.models.base.Model, float]:
    """The model trained for ``epochs`` from ``seed`` and its CPU seconds per epoch."""
    torch.manual_seed(seed)
    model = pm.MODELS[kind.lower()](data.schema, **options)
    start = time.process_time()
    pm.Trainer(model, epochs=epochs, seed=seed, progress=False, **training).fit(data)
    return model, (time.process_time() - start) / epochs


def with_nan(batch: pm.Batch) -> np.ndarray:
    """``[B, T, C]`` float32, NaN where unobserved: PyPOTS' input."""
    x, observed = values(batch)
    return np.where(observed, x, np.nan).astype(np.float32)


def padded(x: np.ndarray, steps: int) -> np.ndarray:
    """``x`` (``[B, T, C]``) with NaN steps appended up to ``steps``."""
    return np.pad(x, ((0, 0), (0, max(steps - x.shape[1], 0)), (0, 0)), constant_values=np.nan)


def train_pypots(name: str, data: pm.Batch, epochs: int, samples: int = 1, steps: int = 0,
                 seed: int = 0) -> tuple[Callable, float]:
    """PyPOTS' ``name`` trained on ``data`` for ``epochs`` from ``seed``: its fill and CPU seconds per epoch.
    Its models take sequences of one length, fixed at training: every sequence is padded with NaN
    to ``steps`` (at least the training sequences' length), so longer test sequences fit too."""
    try:
        from pypots import imputation
        from pypots.utils.random import set_random_seed
    except ImportError as error:
        raise ImportError("--pypots needs the pypots package: run with the benchmark environment's Python "
                          "(.venv-bench, make bench-env)") from error
    x = padded(with_nan(data), steps)
    set_random_seed(seed)
    model = getattr(imputation, name)(n_steps=x.shape[1], n_features=x.shape[2], batch_size=32, epochs=epochs,
                                      device="cpu", saving_path=None, verbose=False, **PYPOTS[name])
    start = time.process_time()
    model.fit({"X": x})
    seconds = (time.process_time() - start) / epochs
    options = {"n_sampling_times": samples} if name == "CSDI" else {}

    def fill(batch: pm.Batch, lengths: np.ndarray) -> np.ndarray:
        x = with_nan(batch)
        imputed = np.asarray(model.predict({"X": padded(x, model.n_steps)}, **options)["imputation"])
        imputed = imputed.mean(1) if imputed.ndim == 4 else imputed  # CSDI's [B, samples, T, C]
        return imputed[:, : x.shape[1]]

    return fill, seconds


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


def figure(run: Run, test: pm.Batch, hidden: np.ndarray, fills: dict[str, np.ndarray], shown: int,
           shown_channels: tuple[int, ...], title: str) -> Path:
    """Test sequence ``shown``, its channels ``shown_channels``: the observed truth, the hidden
    entries and every fill; the command that reproduces it at the foot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, observed = values(test)
    names = [f"{m} {j + 1}" for m in channels(test) for j in range(test.schema[m].shape[0])]
    length = int(lengths(test)[shown])
    steps = np.arange(length)
    fig, axes = plt.subplots(len(shown_channels), 1, figsize=(9, 2.8 * len(shown_channels) + 0.4), sharex=True)
    for c, ax in zip(shown_channels, axes):
        seen, gone = observed[shown, :length, c], hidden[shown, :length, c]
        ax.plot(steps[seen], truth[shown, :length, c][seen], "k.-", lw=1.5, ms=5, label="observed truth")
        ax.scatter(steps[gone], truth[shown, :length, c][gone], s=60, facecolors="none", edgecolors="red", zorder=3,
                   label="hidden (scored)")
        for name, fill in fills.items():
            ax.plot(steps, fill[shown, :length, c], lw=1, label=name)
        ax.set_ylabel(f"{names[c]} (standardised)")
    axes[0].set_title(title)
    axes[0].legend(ncol=4, fontsize=7)
    axes[-1].set_xlabel("step")
    fig.text(0.01, 0.005, run.record["command"], fontsize=7, family="monospace")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path = run.figure_path("tsi")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def protocol(run: Run, dataset: str, epochs: int, seeds: int, pypots: list[str], csdi: dict,
             only: list[str] | None = None, train_seed: int = 0) -> None:
    """The patterns' scores of every method on ``dataset`` (of its models, those in ``only``
    when given), each trained from ``train_seed``; ``csdi``: CSDI's ``epochs``, ``patterns`` and ``samples``."""
    slug, load, models, training, shown_channels = DATASETS[dataset]
    models = {name: spec for name, spec in models.items() if only is None or name in only}
    data, _, test = load()
    truth, size = values(test)[0], lengths(test)
    methods = dict(BASELINES)
    run.table("seconds per epoch", "CPU seconds of the training divided by its epochs, one torch thread, this run")
    for name, (kind, options) in models.items():
        model, epoch_s = train(kind, options, data, epochs, train_seed, **training)
        run.add("seconds per epoch", row=name, column=dataset, value=epoch_s)
        methods[name] = model_fill(model)
        if kind == "MDMM" and model.config.partial == "zeros":  # the same weights, partly observed steps' experts left out
            dropped = copy.copy(model)
            dropped.config = dataclasses.replace(model.config, partial="drop")
            methods[f"{name}, partial steps dropped"] = model_fill(dropped)
    for name in pypots:
        methods[name], epoch_s = train_pypots(name, data, csdi["epochs"] if name == "CSDI" else epochs, csdi["samples"],
                                              steps=truth.shape[1], seed=train_seed)
        run.add("seconds per epoch", row=name, column=dataset, value=epoch_s)
    but_csdi = f", but CSDI {csdi['epochs']}" if "CSDI" in pypots else ""
    run.note(f"every model trained {epochs} epochs (seed {train_seed}){but_csdi}")
    if "CSDI" in pypots:
        imputed = ", ".join(csdi["patterns"])
        run.note(f"CSDI imputes {imputed} only (its sampling runs its network 50 times per mask), the mean of "
                 f"{csdi['samples']} sample(s)" if imputed else "CSDI imputes nothing: trained for its seconds per epoch only")
    csdi_patterns = csdi["patterns"]
    for p in PATTERNS:
        for seed in range(5 if p == "point 10%" else seeds):
            hidden = pattern(test, p, seed)
            inputs = hide(test, hidden)
            fills = {name: fill(inputs, size) for name, fill in methods.items() if name != "CSDI" or p in csdi_patterns}
            for name, filled in fills.items():
                for metric, value in scores(filled, truth, hidden).items():
                    run.add(f"{dataset} {metric}", row=name, column=p, value=value, seed=seed)
            if p == "block" and seed == 0:
                shown = int(hidden[..., list(shown_channels)].sum((1, 2)).argmax())
                title = f"{dataset}, block pattern: test sequence {shown}"
                run.figure(figure(run, test, hidden, fills, shown, shown_channels, title),
                           f"{dataset}, block of 20% of the steps hidden across all channels: each method's fill")
    if dataset not in INTERIOR:
        return
    hidden = interior(test)
    inputs = hide(test, hidden)
    for name, fill in methods.items():
        if name != "CSDI" or "interior" in csdi_patterns:
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
    title = f"JapaneseVowels, 25% of interior steps deleted: test utterance {SHOWN}"
    path = figure(run, test, hidden, fills, SHOWN, (0, 1), title)
    run.figure(path, "JapaneseVowels, 25% of interior steps deleted: each MDMM variant's fill and linear interpolation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs of every model (default 200; 100 with --diagnose)")
    parser.add_argument("--seeds", type=int, default=3, help="mask seeds of every pattern but point 10%% (which has 5)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="JapaneseVowels")
    parser.add_argument("--pypots", nargs="*", choices=sorted(PYPOTS), default=[], help="PyPOTS models to compare (needs pypots)")
    parser.add_argument("--csdi-patterns", nargs="*", choices=[*PATTERNS, "interior"], default=["point 10%"],
                        help="the patterns CSDI imputes (its sampling runs its network 50 times per mask)")
    parser.add_argument("--csdi-samples", type=int, default=1, help="CSDI's samples per fill (their mean)")
    parser.add_argument("--csdi-epochs", type=int, default=None, help="CSDI's training epochs (default: --epochs)")
    parser.add_argument("--models", nargs="+", help="train only these of the dataset's models (default: all)")
    parser.add_argument("--train-seed", type=int, default=0, help="the seed every model trains from")
    parser.add_argument("--diagnose", action="store_true", help="the MDMM variants of the JapaneseVowels case instead")
    args = record_options(parser).parse_args()
    torch.set_num_threads(1)
    if args.diagnose:
        epochs = args.epochs or 100
        run = Run("tsi", args, title="JapaneseVowels: where MDMM loses a deleted step", name=args.record or "diagnosis",
                  description=(__doc__.split("\n\n")[6] + f" {epochs} epochs, batch 128, seed 0, one run per variant."))
        diagnose(run, epochs)
    else:
        epochs = args.epochs or 200
        slug = DATASETS[args.dataset][0]
        run = Run("tsi", args, title="Time-series imputation, TSI-Bench's protocol",
                  name=args.record or ("default" if args.dataset == "JapaneseVowels" else slug),
                  libraries=["pypots"] if args.pypots else [],
                  description=" ".join(__doc__.split("\n\n")[1:6]).replace("\n", " "))
        csdi = {"epochs": args.csdi_epochs or epochs, "patterns": args.csdi_patterns, "samples": args.csdi_samples}
        protocol(run, args.dataset, epochs, args.seeds, args.pypots, csdi, args.models, args.train_seed)
    run.save()


if __name__ == "__main__":
    main()
