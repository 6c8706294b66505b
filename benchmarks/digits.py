"""Label accuracy from the image alone on the digits test split (posterior mean, argmax).

MVAE with all training pairs complete and with 10% complete (the rest split into
image-only and label-only samples, MVAE paper section 5.1), the paper's objective
(``cross=False``) and with cross-modal scoring (``cross=True``), and JMVAE, MVTCAE and MMVAE+
with the same networks, weights and warm-up (their own defaults otherwise), against the
first baseline a user would try: logistic regression on the labelled images alone. Mean and
SD over seeds.

``--weights`` sets the likelihood weights of every model (default ``label=50``, the MVAE paper's).

    python -m benchmarks.digits [--seeds 0 1 2] [--epochs 300] [--models JMVAE MVTCAE "MMVAE+"] [--weights auto]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.linear_model import LogisticRegression

import polymodal as pm
from benchmarks.results import Run, record_options, weights_option
from polymodal.metrics import cross_modal

ACCURACY, MSE = "label accuracy from the image", "image MSE from the label"


def logistic_regression(train: pm.Batch, test: pm.Batch) -> float:
    labelled = (train.present("image") & train.present("label")).numpy()
    x = train.values["image"].flatten(1).numpy()[labelled]
    y = train.values["label"].numpy()[labelled]
    clf = LogisticRegression(max_iter=5000).fit(x, y)
    return float(clf.score(test.values["image"].flatten(1).numpy(), test.values["label"].numpy()))


NETS = {"latent_dim": 16, "hidden": (256, 256)}
MODELS = {
    "MVAE (paper objective)": lambda schema, weights: pm.MVAE(schema, **NETS, weights=weights),
    "MVAE cross=True": lambda schema, weights: pm.MVAE(schema, **NETS, weights=weights, cross=True),
    "JMVAE": lambda schema, weights: pm.JMVAE(schema, **NETS, weights=weights),
    "MVTCAE": lambda schema, weights: pm.MVTCAE(schema, **NETS, weights=weights),
    "MMVAE+": lambda schema, weights: pm.MMVAEPlus(schema, **NETS, weights=weights),
}


def fit(name: str, train: pm.Batch, test: pm.Batch, epochs: int, seed: int, weights: dict[str, float] | str) -> dict[str, float]:
    torch.manual_seed(seed)
    model = MODELS[name](train.schema, weights)
    pm.Trainer(model, epochs=epochs, batch_size=64, kl_warmup=epochs / 3, seed=seed, progress=False).fit(train)
    return cross_modal(model, test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--paired", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--weights", type=weights_option, default={"label": 50.0}, help="auto, or name=value pairs")
    args = record_options(parser).parse_args()
    run = Run("digits", args, title="Labels from images on the digits",
              description="scikit-learn's digits as image + label; a fraction of the training pairs complete, the rest "
                          "split into image-only and label-only samples; scored on the test split (posterior mean).")
    run.table(ACCURACY, "argmax of the decoded label; higher is better")
    run.table(MSE, "lower is better")
    for paired in args.paired:
        column = f"{paired:.0%} paired"
        for seed in args.seeds:
            train, test = pm.load_digits(paired=paired, seed=seed)
            run.add(ACCURACY, row="logistic regression (labelled images)", column=column,
                    value=logistic_regression(train, test), seed=seed)
            for name in args.models:
                scores = fit(name, train, test, args.epochs, seed, args.weights)
                run.add(ACCURACY, row=name, column=column, value=scores["label_accuracy_from_image"], seed=seed)
                run.add(MSE, row=name, column=column, value=scores["image_mse_from_label"], seed=seed)
            print(f"{column}, seed {seed} done", flush=True)
    run.save()


if __name__ == "__main__":
    main()
