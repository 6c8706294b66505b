"""The ``polymodal`` command: train, impute, predict, score and report on your own files.

    polymodal config MODEL                      a commented example config with every option
    polymodal fit CONFIG.yaml [--out DIR] [--resume]
    polymodal impute MODEL_DIR IN [-o OUT] [--draws K]
    polymodal impute --fit IN -o OUT [--model NAME]
    polymodal predict MODEL_DIR IN --target NAME [--inputs A,B] [-o OUT]
    polymodal evaluate MODEL_DIR [DATA] [--mask-rate R --mechanism mcar|mar|mnar --seed S]
    polymodal info MODEL_DIR
    polymodal report RUN_DIR
    polymodal demo [--out DIR] [--epochs N] [--paired F] [--resume] [--device D] [--tensorboard]

Bad input (a missing file, an unknown config key, a column the model does not know) ends
with exit code 2 and a one-line error; ``--debug`` shows the Python traceback instead.
``demo`` trains MVAE on the built-in digits data with only a fraction of complete pairs and
writes, into its run folder, checkpoints, ``history.csv``, the saved model (``model/``),
``results.json`` and plots. It runs unchanged under ``torchrun`` (one process per rank;
rank 0 writes).
"""

from __future__ import annotations

import argparse
import sys
import warnings


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


def markers(text: str) -> list[str]:
    """An argparse type: comma-separated missing-value markers."""
    return text.split(",")


def device(text: str) -> str:
    """An argparse type: a device this machine has, checked before any data is loaded."""
    from .config import ConfigError
    from .training import resolve_device

    try:
        resolve_device(text)
    except (ConfigError, RuntimeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    top = argparse.ArgumentParser(prog="polymodal", description="Generative models of incomplete multimodal data: "
                                  "train on your own files, fill their gaps, predict, score and report.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: str, help: str, description: str, usage: str | None = None) -> argparse.ArgumentParser:
        p = commands.add_parser(name, parents=[common], help=help, description=description, usage=usage,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(run=run)
        return p

    p = command("config", "config_command", "print a commented example config for a model",
                "Print a YAML config for `polymodal fit` with every option of MODEL and of the trainer at its default.\n"
                "Save it, set data.train, and edit what you need:  polymodal config miwae > run.yaml")
    p.add_argument("model", metavar="MODEL", help="a registered model, such as miwae or mdmm (an unknown name lists them all)")

    p = command("fit", "fit", "train a model as a config file says",
                "Train the model of CONFIG.yaml on its data. The run folder gets checkpoints, history.csv, the saved\n"
                "model with its data transform (model/), scores.json (held-out entries) and report.html.")
    p.add_argument("config", metavar="CONFIG.yaml", help="the run config (see `polymodal config MODEL`)")
    p.add_argument("--out", help="run folder (default: trainer.out, or runs/<config name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")

    p = command("impute", "impute", "fill the missing cells of a file",
                "Fill every missing cell of IN (CSV, Parquet or NPZ; empty cells or NaN are missing) and write the\n"
                "same format and columns to OUT, observed cells unchanged.\n\n"
                "  polymodal impute MODEL_DIR IN [-o OUT]     with a model saved by `fit` or `impute --fit --save`\n"
                "  polymodal impute --fit IN -o OUT           fit an Imputer on IN itself, then fill IN\n\n"
                "--draws K writes K multiple imputations, OUT.draw1 ... OUT.drawK, each sampled from the model\n"
                "given the observed cells (sampling importance resampling).",
                usage="polymodal impute MODEL_DIR IN [-o OUT] [--draws K] [--samples S] [--seed S] [--na-values A,B]\n"
                      "       polymodal impute --fit IN -o OUT [--model NAME] [--steps N] [--save DIR] [--id COLUMN]"
                      " [--na-values A,B]")
    p.add_argument("paths", nargs="+", metavar="PATH", help="MODEL_DIR and IN, or with --fit only IN")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default: IN.imputed with IN's suffix)")
    p.add_argument("--draws", type=int, default=0, metavar="K", help="write K multiple imputations")
    p.add_argument("--samples", type=int, help="importance samples per imputation (default: the model's)")
    p.add_argument("--fit", action="store_true", help="fit an Imputer on IN itself first")
    p.add_argument("--model", default="auto", help="with --fit: auto (default: a Gaussian mixture and MIWAE "
                                                   "blended per column), or one model, e.g. miwae or gaussian")
    p.add_argument("--steps", type=int, help="with --fit: most training steps (default: sized to the table; early "
                                             "stopping on held-out cells of 20%% of the rows)")
    p.add_argument("--save", metavar="DIR", help="with --fit: also save the fitted imputer there")
    p.add_argument("--id", default="id", help="with --fit: a column of sample ids, copied and not modelled (default: id)")
    p.add_argument("--seed", type=int, default=0)

    p = command("predict", "predict", "predict one modality from others",
                "Predict modality --target of every sample (every step, for sequences) in IN from the --inputs\n"
                "modalities (default: all others). Writes CSV to stdout, or -o OUT in the format of its suffix,\n"
                "with the columns the model does not use (e.g. id) first.")
    p.add_argument("folder", metavar="MODEL_DIR")
    p.add_argument("data", metavar="IN")
    p.add_argument("--target", required=True, help="the modality to predict (a column name or a group name)")
    p.add_argument("--inputs", help="comma-separated modalities to predict from (default: all others)")
    p.add_argument("-o", "--output", metavar="OUT")

    p = command("evaluate", "evaluate_command", "score a saved model on held-out entries of a file",
                "Hide observed entries of DATA (MCAR at --mask-rate, or MAR / MNAR as the VSAE paper defines them),\n"
                "impute them and print per-modality scores on them: NRMSE for numeric modalities, accuracy and\n"
                "PFC for categorical ones, and the held-out log-likelihood per entry. Without DATA, a digits model\n"
                "(polymodal demo) is scored on the digits test split.")
    p.add_argument("folder", metavar="MODEL_DIR")
    p.add_argument("data", metavar="DATA", nargs="?")
    p.add_argument("--mask-rate", type=float, default=0.2, help="fraction of observed entries hidden (mcar)")
    p.add_argument("--mechanism", default="mcar", metavar="mcar|mar|mnar", help="how entries are hidden")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int,
                   help="importance samples per imputation (default 100; 0, from the posterior mean, for MFM)")
    p.add_argument("--json", metavar="FILE", help="also write the scores as JSON")

    for name in ("impute", "predict", "evaluate"):
        commands.choices[name].add_argument(
            "--na-values", type=markers, default=[], metavar="A,B",
            help="text that marks a missing cell besides an empty cell and NaN, e.g. NA,None (default: none; "
                 "a model fitted with markers also uses its own)")

    p = command("info", "info", "describe a saved model",
                "Print the model, its modalities and data columns, options, version, size and training summary.")
    p.add_argument("folder", metavar="MODEL_DIR", help="a saved model folder or a run folder")

    p = command("report", "report_command", "(re)write report.html of a run folder",
                "Write RUN_DIR/report.html: config, loss curves, scores and pictures of held-out imputations.\n"
                "RUN_DIR is a run folder of `polymodal fit`, or of `polymodal demo` (scored on the digits test split).")
    p.add_argument("folder", metavar="RUN_DIR")

    p = command("demo", "demo", "train MVAE on digits with 10%% complete pairs, report and plot",
                "Train MVAE on scikit-learn's digits with only a fraction of complete image-label pairs.")
    p.add_argument("--out", help="run folder (default: runs/demo-<time>)")
    p.add_argument("--paired", type=fraction, default=0.1, help="fraction of complete training pairs")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--tensorboard", action="store_true", help="also log to <out>/tensorboard (needs tensorboard)")
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)  # --help and usage errors end here, before torch is imported
    from . import commands

    try:
        with warnings.catch_warnings():  # a warning is one line: a note, not a traceback-like location
            warnings.showwarning = lambda message, *_, **__: print(f"polymodal {args.command}: note: {message}",
                                                                   file=sys.stderr)
            getattr(commands, args.run)(args)
    except commands.ERRORS as error:
        if args.debug:
            raise
        message = " ".join(str(error).split()) if not isinstance(error, KeyError) else str(error.args[0])
        print(f"polymodal {args.command}: error: {message}", file=sys.stderr)
        sys.exit(2)

