"""MEME against MVAE on handwritten <-> printed digits, and on semi-supervised labels.

Part 1 (``--part styles``): ``load_digit_styles`` at paired fractions f, MEME, MVAE
(``cross=True``), MMVAE (stratified IWAE, K = 4; ``--mmvae-gradient dreg`` for the
reference's DReG) and MoPoE with the same nets (latent 16; an MLP with one hidden layer of
256 for the hand, the conv nets with channels 32, 64 for the prints), epochs and batches
of 32: cross coherence hand -> print and print -> hand (the generated modality classified
by a logistic regression fitted on that modality's real training images; prints through
``print_features``), the linear-probe accuracy of the latent from each modality alone, and
training speed (samples/s over the epochs). At f = 1/16 also the simplest alternative to
print -> hand generation: a classifier on the paired prints alone, whose predicted class
would have to be drawn.

Part 2 (``--part labels``): scikit-learn digits, image + label with 5% and 10% of the pairs
complete; label accuracy from the image alone for MEME (t = the label), MVAE ``cross=True``
(label weight 50, as ``benchmarks/digits.py``) and logistic regression on the labelled
images only.

Part 3 (``--part relatedness``): MEME at f = 1; W2 between the unimodal posteriors of every
test hand and print, paired against unpaired, and the class-by-class matrix (is each hand
class nearest its own print class?); figures in ``benchmarks/figures/``.

Part 4 (``--part likelihood``): the paper's Table 2 on this data: MEME at f = 1 trained in one
direction (s = hand, t = print; and the reverse) and in both, each scored in both test
directions by ``MEME.bound`` (L_{s->t} with K = 100 draws for log q(t|s), weight 1), the mean
over the test pairs; a test direction other than the trained one "flips" the networks.

Part 5 (``--part three``): MEME on three modalities. ``load_digit_styles(label=True)``, hand
and print present in every training sample and the label kept for a random fraction f of them
(``--fractions``); label accuracy from the hand alone
and from the print alone, of MEME on all three (each observed modality scored against the
product of the others' encoders, Appendix E) and of MEME on each image with the label (the
samples without it image-only), with the nets of part 1, against logistic regression on the
labelled images (prints through ``print_features``). ``--code-options``: MEME with the
reference code's choices (``CODE``) instead of the paper's.

    python -m benchmarks.meme --part styles [--seeds 0] [--epochs 30] [--fractions 1 0.25 0.0625]
    python -m benchmarks.meme --part labels [--seeds 0 1] [--epochs 100]
    python -m benchmarks.meme --part relatedness [--seeds 0] [--epochs 30]
    python -m benchmarks.meme --part likelihood [--seeds 0] [--epochs 30]
    python -m benchmarks.meme --part three [--seeds 0] [--epochs 30] [--fractions 0.1] [--code-options]

Each part is a record of its own, named after the part.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.linear_model import LogisticRegression

import polymodal as pm
from benchmarks.results import Run, record_options
from polymodal import metrics
from polymodal.datasets import print_features

CODE = {"classifier_weight": 10.0, "combine": "sum", "analytic_kl": True}


def styles_scores(model, train, test, y_train, y_test, classifiers) -> dict[str, float]:
    scores = {
        "hand→print": metrics.cross_coherence(model, test, "hand", "print", y_test, classifiers["print"], print_features),
        "print→hand": metrics.cross_coherence(model, test, "print", "hand", y_test, classifiers["hand"]),
    }
    probe = metrics.latent_accuracy(model, train, test, y_train, y_test)
    return {**scores, "latent from hand": probe["hand"], "latent from print": probe["print"]}


STYLES = {"hand→print": "cross coherence hand → print (the generated print's class read by a classifier of real prints)",
          "print→hand": "cross coherence print → hand (the generated hand's class read by a classifier of real hands)",
          "latent from hand": "linear-probe accuracy of the latent from the hand alone",
          "latent from print": "linear-probe accuracy of the latent from the print alone",
          "samples/s": "training speed"}


def run_styles(args: argparse.Namespace, run: Run) -> None:
    for metric, caption in STYLES.items():
        run.table(metric, caption)
    train, _, y_train, _ = pm.load_digit_styles()
    classifiers = {
        "hand": LogisticRegression(max_iter=2000).fit(train.values["hand"].flatten(1).numpy(), y_train.numpy()),
        "print": LogisticRegression(max_iter=2000, C=0.1).fit(print_features(train.values["print"]).numpy(), y_train.numpy()),
    }
    for paired in args.fractions:
        for seed in args.seeds:
            train, test, y_train, y_test = pm.load_digit_styles(paired, seed)
            models = {
                "MEME (code's options)": pm.MEME(train.schema, latent_dim=16, hidden=(256,), pseudo_samples=64, **CODE),
                "MVAE cross=True": pm.MVAE(train.schema, latent_dim=16, hidden=(256,), cross=True),
                f"MMVAE ({args.mmvae_gradient}, K = 4)": pm.MMVAE(train.schema, latent_dim=16, hidden=(256,), samples=4,
                                                                  gradient=args.mmvae_gradient),
                "MoPoE": pm.MoPoE(train.schema, latent_dim=16, hidden=(256,)),
            }
            for name, model in models.items():
                torch.manual_seed(seed)
                history = pm.Trainer(model, epochs=args.epochs, batch_size=32, seed=seed, progress=False).fit(train)
                scores = styles_scores(model, train, test, y_train, y_test, classifiers)
                scores["samples/s"] = len(train) * len(history) / sum(h["seconds"] for h in history)
                for metric, value in scores.items():
                    run.add(metric, row=name, column=f"f = {paired:g}", value=value, seed=seed)
            if paired < 0.1:
                both = (train.present("hand") & train.present("print")).numpy()
                clf = LogisticRegression(max_iter=2000, C=0.1).fit(print_features(train.values["print"])[both].numpy(),
                                                                  y_train.numpy()[both])
                accuracy = float(clf.score(print_features(test.values["print"]).numpy(), y_test.numpy()))
                run.add("print→hand", row="classifier on the paired prints only (its accuracy)", column=f"f = {paired:g}",
                        value=accuracy, seed=seed)
            print(f"f = {paired:g}, seed {seed} done", flush=True)


def run_labels(args: argparse.Namespace, run: Run) -> None:
    table = "label accuracy from the image"
    run.table(table, "scikit-learn digits, image + label, a fraction of the pairs complete; higher is better")
    for paired in (0.05, 0.1):
        for seed in args.seeds:
            train, test = pm.load_digits(paired=paired, seed=seed)
            labelled = (train.present("image") & train.present("label")).numpy()
            clf = LogisticRegression(max_iter=5000).fit(train.values["image"].flatten(1).numpy()[labelled],
                                                        train.values["label"].numpy()[labelled])
            column = f"{paired:.0%} paired"
            y = test.values["label"]
            run.add(table, row="logistic regression (labelled images)", column=column,
                    value=clf.score(test.values["image"].flatten(1).numpy(), y.numpy()), seed=seed)
            models = {
                "MEME": pm.MEME(train.schema, latent_dim=16, hidden=(256, 256), pseudo_samples=128),
                "MEME (code's options)": pm.MEME(train.schema, latent_dim=16, hidden=(256, 256), pseudo_samples=128, **CODE),
                "MVAE cross=True": pm.MVAE(train.schema, latent_dim=16, hidden=(256, 256), weights={"label": 50.0}, cross=True),
            }
            for name, model in models.items():
                torch.manual_seed(seed)
                warmup = args.epochs / 3 if isinstance(model, pm.MVAE) else 0.0
                pm.Trainer(model, epochs=args.epochs, batch_size=64, kl_warmup=warmup, seed=seed, progress=False).fit(train)
                accuracy = metrics.accuracy(model.predict(test, "label", ["image"]).cpu(), y)
                run.add(table, row=name, column=column, value=accuracy, seed=seed)
            print(f"{column}, seed {seed} done", flush=True)


def run_relatedness(args: argparse.Namespace, run: Run) -> None:
    from polymodal.report import plot_relatedness

    table = "posterior relatedness"
    run.table(table, "MEME (code's options) at f = 1: W2 between the unimodal posteriors of the test hands and prints")

    for seed in args.seeds:
        train, test, _, y_test = pm.load_digit_styles(seed=seed)
        model = pm.MEME(train.schema, latent_dim=16, hidden=(256,), pseudo_samples=64, **CODE)
        torch.manual_seed(seed)
        pm.Trainer(model, epochs=args.epochs, batch_size=32, seed=seed, progress=False).fit(train)
        distances = metrics.posterior_w2(model, test, "hand", "print")
        split = metrics.relatedness(distances)
        matrix = metrics.class_distances(distances, y_test, y_test, 10)
        scores = {"W2 paired (mean)": split["paired_mean"], "W2 unpaired (mean)": split["unpaired_mean"],
                  "classes whose own print class is the nearest": float((matrix.argmin(1) == torch.arange(10)).float().mean())}
        for metric, value in scores.items():
            run.add(table, row=metric, column="f = 1", value=value, seed=seed)
        path = plot_relatedness(distances, y_test, y_test, run.figure_path(f"meme_relatedness_seed{seed}"), ("hand", "print"))
        run.figure(path, f"W2 between the test hands' and prints' posteriors, paired against unpaired and by class (seed {seed})")


def run_likelihood(args: argparse.Namespace, run: Run) -> None:
    table = "L_{s→t}"
    run.table(table, "MEME.bound with K = 100 draws, the mean over the test pairs, per test direction (rows) and trained "
                     "direction (columns); higher is better")
    trained = {"trained s = hand, t = print": "s_to_t", "trained s = print, t = hand": "t_to_s", "trained both": "both"}
    for seed in args.seeds:
        train, test, _, _ = pm.load_digit_styles(seed=seed)
        for column, direction in trained.items():
            model = pm.MEME(train.schema, latent_dim=16, hidden=(256,), pseudo_samples=64, direction=direction, **CODE)
            torch.manual_seed(seed)
            pm.Trainer(model, epochs=args.epochs, batch_size=32, seed=seed, progress=False).fit(train)
            for source, target in (("hand", "print"), ("print", "hand")):
                bound = torch.cat([model.bound(test.select(rows), source, samples=100).cpu()
                                   for rows in torch.arange(len(test)).split(50)])
                run.add(table, row=f"test s = {source}, t = {target}", column=column, value=float(bound.mean()), seed=seed)
            print(f"{column}, seed {seed} done", flush=True)


def modalities(batch: pm.Batch, names: list[str]) -> pm.Batch:
    """``batch`` restricted to the modalities ``names``."""
    schema = pm.Schema([batch.schema[name] for name in names])
    return pm.Batch(schema, {n: batch.values[n] for n in names}, {n: batch.observed[n] for n in names})


def run_three(args: argparse.Namespace, run: Run) -> None:
    table = "label accuracy"
    run.table(table, "the label from one image alone on the test digits; higher is better")
    features = {"hand": lambda b: b.values["hand"].flatten(1).numpy(),
                "print": lambda b: print_features(b.values["print"]).numpy()}
    for fraction in args.fractions:
        for seed in args.seeds:
            train, test, _, y_test = pm.load_digit_styles(seed=seed, label=True)
            keep = torch.rand(len(train), generator=torch.Generator().manual_seed(seed)) < fraction
            train = train.with_observed({"label": train.observed["label"] & keep})
            column = f"f = {fraction:g}"
            for image in ("hand", "print"):
                clf = LogisticRegression(max_iter=3000).fit(features[image](train)[keep.numpy()],
                                                            train.values["label"][keep].numpy())
                run.add(table, row="logistic regression (labelled images)", column=f"{column}, from {image}", seed=seed,
                        value=float(clf.score(features[image](test), y_test.numpy())))
            for names in (["hand", "print", "label"], ["hand", "label"], ["print", "label"]):
                torch.manual_seed(seed)
                data = modalities(train, names)
                options = CODE if args.code_options else {}
                model = pm.MEME(data.schema, latent_dim=16, hidden=(256,), pseudo_samples=64, **options)
                pm.Trainer(model, epochs=args.epochs, batch_size=32, seed=seed, progress=False).fit(data)
                for image in names[:-1]:
                    predicted = model.predict(modalities(test, names), "label", [image]).cpu()
                    run.add(table, row=f"MEME on {', '.join(names)}", column=f"{column}, from {image}", seed=seed,
                            value=metrics.accuracy(predicted, y_test))
            print(f"{column}, seed {seed} done", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["styles", "labels", "relatedness", "likelihood", "three"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.0625])
    parser.add_argument("--code-options", action="store_true", help="three: MEME with the reference code's options")
    parser.add_argument("--mmvae-gradient", choices=["iwae", "dreg"], default="iwae", help="dreg: the MMVAE reference's")
    args = record_options(parser).parse_args()
    titles = {"styles": "MEME against MVAE, MMVAE and MoPoE on handwritten and printed digits",
              "labels": "MEME on semi-supervised labels", "relatedness": "MEME's posterior relatedness",
              "likelihood": "MEME's bound per trained and tested direction", "three": "MEME on three modalities"}
    run = Run("meme", args, title=titles[args.part], name=args.record or args.part,
              description=f"{args.epochs} epochs; the paired fraction f of the training pairs complete.")
    {"styles": run_styles, "labels": run_labels, "relatedness": run_relatedness,
     "likelihood": run_likelihood, "three": run_three}[args.part](args, run)
    run.save()


if __name__ == "__main__":
    main()
