"""The ``polymodal`` command."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .datasets import load_digits
from .metrics import cross_modal
from .models import MVAE
from .report import plot_history, plot_image_label
from .training import Trainer


def demo(args: argparse.Namespace) -> Path:
    """Train MVAE on digits where only a fraction of pairs is complete; report and plot."""
    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_digits(paired=args.paired, seed=args.seed)
    print(f"digits: {len(train)} training samples, {args.paired:.0%} complete pairs, the rest image-only or label-only")
    model = MVAE(train.schema, latent_dim=16, hidden=(256, 256), weights={"label": 50.0}, cross=True)
    trainer = Trainer(model, epochs=args.epochs, batch_size=64, kl_warmup=args.epochs / 4, seed=args.seed)
    history = trainer.fit(train)
    results = {"model": "mvae", "paired": args.paired, "epochs": args.epochs, "seed": args.seed, **cross_modal(model, test)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_image_label(model, test, out / "digits.png")
    plot_history(history, out / "loss.png")
    print(f"label accuracy from images alone: {results['label_accuracy_from_image']:.3f}")
    print(f"image MSE from labels alone:     {results['image_mse_from_label']:.4f}")
    print(f"results and plots written to {out}/")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="polymodal", description="Generative models of incomplete multimodal data.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="train MVAE on digits with 10%% complete pairs, report and plot")
    p.add_argument("--out", help="run folder (default: runs/demo-<time>)")
    p.add_argument("--paired", type=float, default=0.1, help="fraction of complete training pairs")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=demo)
    args = parser.parse_args(argv)
    args.run(args)
