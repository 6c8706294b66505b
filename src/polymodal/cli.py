"""The ``polymodal`` command.

    polymodal demo [--out DIR] [--epochs N] [--paired F] [--resume] [--device D] [--tensorboard]
    polymodal evaluate DIR/model

``demo`` trains MVAE on the built-in digits data with only a fraction of complete pairs and
writes, into its run folder, checkpoints, ``history.csv``, the saved model (``model/``),
``results.json`` and plots. It runs unchanged under ``torchrun`` (one process per rank;
rank 0 writes). ``evaluate`` loads a saved model and scores it on the digits test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .config import ConfigError
from .datasets import load_digits
from .metrics import cross_modal
from .models import MVAE
from .persistence import load
from .report import plot_history, plot_image_label
from .training import Trainer, resolve_device


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


def device(text: str) -> str:
    """An argparse type: a device this machine has, checked before any data is loaded."""
    try:
        resolve_device(text)
    except (ConfigError, RuntimeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def report(scores: dict[str, float]) -> None:
    print(f"label accuracy from images alone: {scores['label_accuracy_from_image']:.3f}")
    print(f"image MSE from labels alone:     {scores['image_mse_from_label']:.4f}")


def demo(args: argparse.Namespace) -> None:
    """Train MVAE on digits where only a fraction of pairs is complete; report and plot."""
    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    train, test = load_digits(paired=args.paired, seed=args.seed)
    model = MVAE(train.schema, latent_dim=16, hidden=(256, 256), weights={"label": 50.0}, cross=True)
    trainer = Trainer(
        model, epochs=args.epochs, batch_size=64, kl_warmup=args.epochs / 3, seed=args.seed, device=args.device,
        out=str(out), checkpoint_every=args.checkpoint_every, tensorboard=args.tensorboard,
    )
    if trainer.rank == 0:
        print(f"digits: {len(train)} training samples, {args.paired:.0%} complete pairs, the rest image-only or label-only")
    history = trainer.fit(train, resume=args.resume)
    if trainer.rank != 0:
        return
    scores = cross_modal(model, test)
    results = {"model": model.name, "paired": args.paired, "epochs": args.epochs, "seed": args.seed, **scores}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    model.save(out / "model")
    plot_image_label(model, test, out / "digits.png")
    plot_history(history, out / "loss.png")
    report(scores)
    print(f"results, plots, checkpoint and saved model written to {out}/")


def evaluate(args: argparse.Namespace) -> None:
    """Score a saved model on the digits test split."""
    model = load(args.folder)
    _, test = load_digits()
    report(cross_modal(model, test))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="polymodal", description="Generative models of incomplete multimodal data.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="train MVAE on digits with 10%% complete pairs, report and plot")
    p.add_argument("--out", help="run folder (default: runs/demo-<time>)")
    p.add_argument("--paired", type=fraction, default=0.1, help="fraction of complete training pairs")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--tensorboard", action="store_true", help="also log to <out>/tensorboard (needs tensorboard)")
    p.set_defaults(run=demo)
    p = commands.add_parser("evaluate", help="score a saved model on the digits test split")
    p.add_argument("folder", help="a saved model folder, e.g. runs/demo-.../model")
    p.set_defaults(run=evaluate)
    args = parser.parse_args(argv)
    args.run(args)
