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
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .config import ConfigError
from .data import Batch, DataError, concat
from .datasets import load_digits
from .datasets.digits import digits_schema
from .datasets.files import read_frame, sequence_file, write_frame
from .evaluation import MECHANISMS, draw_imputations, evaluate
from .metrics import cross_modal
from .models import MODELS, MVAE
from .persistence import TRANSFORM, ModelFileError, load, load_transform
from .progress import chunked
from .tables import SequenceSchema, Transform
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
    from .report import plot_history, plot_image_label, write_report

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
    write_report(out, evaluate(model, test, samples=100))
    report(scores)
    print(f"results, plots, report.html, checkpoint and saved model written to {out}/")


def model_folder(path: str) -> Path:
    """A saved model folder, or the ``model/`` folder of a run folder."""
    folder = Path(path)
    return folder / "model" if (folder / "model" / "config.json").is_file() else folder


def read(transform: Transform, path: str, absent: tuple[str, ...] = ()):
    """A file as the model's transform reads it: the frame and its batch. Columns named in
    ``absent`` may be missing from the file (they are then missing for every sample)."""
    sequence = isinstance(transform, SequenceSchema)
    frame = read_frame(path, transform.id, transform.time) if sequence else read_frame(path)
    given = frame.assign(**{c: np.nan for c in absent if c not in frame.columns})
    return frame, transform.transform(given)


def write(transform: Transform, frame, path: Path, like: str) -> None:
    sequence = (transform.id, transform.time) if isinstance(transform, SequenceSchema) else None
    write_frame(frame, path, like, sequence)


def output_path(given: str | None, source: str, tag: str) -> Path:
    return Path(given) if given else Path(source).with_name(f"{Path(source).stem}.{tag}{Path(source).suffix}")


def fit(args: argparse.Namespace) -> None:
    """Train a model as a config file says; write the run folder."""
    from .run import fit as fit_run
    from .run import load_config

    config = load_config(args.config)
    out = args.out or config.trainer.get("out") or f"runs/{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    fit_run(config, out, resume=args.resume, progress=not args.quiet)
    print(f"run written to {out}/ (model/, history.csv, scores.json, report.html)")


def impute(args: argparse.Namespace) -> None:
    """Fill the missing cells of a file with a saved model, or with one fitted on the file."""
    if args.fit:
        return impute_fit(args)
    if len(args.paths) != 2:
        raise ConfigError("impute: give MODEL_DIR and IN (or --fit IN -o OUT to fit a model on IN itself)")
    folder, source = model_folder(args.paths[0]), args.paths[1]
    model, transform = load(folder), load_transform(folder)
    frame, batch = read(transform, source)
    options = {} if args.samples is None else {"samples": args.samples}
    out = output_path(args.output, source, "imputed")
    if args.draws:
        rows = chunked(lambda part: draw_imputations(model, batch.select(part), args.draws, args.samples or 100, args.seed),
                       len(batch), progress=not args.quiet, desc="impute")
        for k in range(args.draws):
            path = out.with_name(f"{out.stem}.draw{k + 1}{out.suffix}")
            write(transform, transform.fill(frame, concat([r[k] for r in rows])), path, source)
        print(f"{args.draws} imputations written to {out.with_name(f'{out.stem}.draw*{out.suffix}')}")
        return
    torch.manual_seed(args.seed)
    parts = chunked(lambda part: model.impute(batch.select(part), **options).to("cpu"), len(batch),
                    progress=not args.quiet, desc="impute")
    write(transform, transform.fill(frame, concat(parts)), out, source)
    print(f"imputed table written to {out}")


def impute_fit(args: argparse.Namespace) -> None:
    from .imputer import Imputer

    if len(args.paths) != 1 or not args.output:
        raise ConfigError("impute --fit: give one input file and -o OUT")
    source = args.paths[0]
    if sequence_file(source):
        raise ConfigError(f"impute --fit fills tables, and {source} holds sequences [N, T, F]; train a sequence model "
                          "(mdmm or dks) with `polymodal fit CONFIG.yaml`, then `polymodal impute RUN_DIR IN`")
    frame = read_frame(source)
    ids = [c for c in frame.columns if c == args.id]
    values = frame.drop(columns=ids)
    options = {"epochs": args.epochs, "samples": 1000 if args.samples is None else args.samples}
    imputer = Imputer(model=args.model, random_state=args.seed, progress=not args.quiet, **options).fit(values)
    write_frame(frame[ids].join(imputer.transform(values))[list(frame.columns)], args.output, source)
    if args.save:
        imputer.save(args.save)
        print(f"imputer saved to {args.save}/")
    print(f"imputed table written to {args.output}")


def predict(args: argparse.Namespace) -> None:
    """Predict one modality from others, for every sample (every step) of a file."""
    folder = model_folder(args.folder)
    model, transform = load(folder), load_transform(folder)
    if args.target not in model.schema:
        raise DataError(f"--target {args.target!r} is not a modality of the model; it has {model.schema.names}")
    inputs = args.inputs.split(",") if args.inputs else None
    unknown = sorted(set(inputs or ()) - set(model.schema.names))
    if unknown:
        raise DataError(f"--inputs {unknown} are not modalities of the model; it has {model.schema.names}")
    tables = transform.tables_ if isinstance(transform, SequenceSchema) else transform
    columns = tables.modality_columns_[args.target]
    frame, batch = read(transform, args.data, absent=tuple(columns))
    parts = chunked(lambda part: model.predict(batch.select(part), args.target, inputs).cpu(), len(batch),
                    progress=not args.quiet, desc="predict")
    values = dict(batch.values)
    values[args.target] = torch.cat(parts).to(values[args.target].dtype)
    predicted = Batch(batch.schema, values, {k: torch.ones_like(m) for k, m in batch.observed.items()})
    if isinstance(transform, SequenceSchema):
        out = transform.inverse_transform(predicted, like=frame)[[transform.id, transform.time, *columns]]
    else:
        table = transform.inverse_transform(predicted)
        out = table[columns].set_axis(frame.index)
        kept = [c for c in frame.columns if c not in transform.columns_]  # ids and other columns the model ignores
        out = frame[kept].join(out)
    if args.output:
        write(transform, out, Path(args.output), args.data)
        print(f"predictions written to {args.output}")
    else:
        out.to_csv(sys.stdout, index=False)


def evaluate_command(args: argparse.Namespace) -> None:
    """Score a saved model on held-out entries of a file (or, for digits models, the digits test split)."""
    folder = model_folder(args.folder)
    model = load(folder)
    if args.data is None:
        if (folder / TRANSFORM).is_file() or model.schema != digits_schema():
            raise ConfigError("evaluate: give DATA, the file to score the model on")
        _, test = load_digits()
        report(cross_modal(model, test))
        return
    _, batch = read(load_transform(folder), args.data)
    result = evaluate(model, batch, args.mask_rate, args.mechanism, args.seed, args.samples, progress=not args.quiet)
    if not result.scores:
        raise DataError(f"{args.data}: nothing was hidden to score (no observed entries, or --mask-rate 0)")
    metrics = list(dict.fromkeys(k for s in result.scores.values() for k in s))
    width = max(len(n) for n in result.scores) + 2
    print("modality".ljust(width) + "".join(f"{m:>16}" for m in metrics))
    for name, s in result.scores.items():
        print(name.ljust(width) + "".join(f"{s[m]:>16.4g}" if m in s else " " * 16 for m in metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(result.scores, indent=2))


def info(args: argparse.Namespace) -> None:
    """What a saved model is: model, modalities, options, version, size, training summary."""
    from .report import history

    folder = model_folder(args.folder)
    model = load(folder)
    saved = json.loads((folder / "config.json").read_text())
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {model.name} ({type(model).__name__}), saved by polymodal {saved.get('polymodal')}")
    print(f"size: {parameters:,} parameters, {size / 1024:.1f} KiB in {folder}")
    print("modalities:")
    for m in model.schema:
        kind = m.likelihood.name + (f", {m.num_classes} classes" if m.categorical else "")
        shape = "x".join(map(str, m.shape)) or "scalar"
        print(f"  {m.name}: {'sequence of ' if m.sequential else ''}{shape}, {kind}")
    if (folder / TRANSFORM).is_file():
        transform = load_transform(folder)
        tables = transform.tables_ if isinstance(transform, SequenceSchema) else transform
        kind = f"sequences in long format (id {transform.id!r}, time {transform.time!r})" \
            if isinstance(transform, SequenceSchema) else "a table"
        print(f"data: {kind}, columns {tables.columns_}")
    print("options: " + yaml.safe_dump(saved["config"], default_flow_style=True, width=1000).strip())
    records = history(folder.parent if (folder.parent / "config.yaml").is_file() else folder)
    if records:
        last = records[-1]
        line = f"training: {len(records)} epochs, final loss {last['loss']:.4g}"
        if "valid_loss" in last:
            best = min(records, key=lambda r: r["valid_loss"])
            line += f", best validation loss {best['valid_loss']:.4g} at epoch {int(best['epoch'])}"
        print(line)


def report_command(args: argparse.Namespace) -> None:
    """(Re)write report.html of a run folder of `fit`, or of `demo` (scored on the digits test split)."""
    from .report import write_report
    from .run import rescore

    run = Path(args.folder)
    if not (run / "config.yaml").is_file() and (run / "model").is_dir() and load(run / "model").schema == digits_schema():
        evaluation = evaluate(load(run / "model"), load_digits()[1], samples=100, progress=not args.quiet)
    else:
        evaluation = rescore(run, progress=not args.quiet)
    path = write_report(run, evaluation)
    print(f"report written to {path}")


def config_command(args: argparse.Namespace) -> None:
    """Print a commented example config for a model."""
    from .run import example_config

    print(example_config(args.model), end="")


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    top = argparse.ArgumentParser(prog="polymodal", description="Generative models of incomplete multimodal data: "
                                  "train on your own files, fill their gaps, predict, score and report.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run, help: str, description: str, usage: str | None = None) -> argparse.ArgumentParser:
        p = commands.add_parser(name, parents=[common], help=help, description=description, usage=usage,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(run=run)
        return p

    p = command("config", config_command, "print a commented example config for a model",
                "Print a YAML config for `polymodal fit` with every option of MODEL and of the trainer at its default.\n"
                "Save it, set data.train, and edit what you need:  polymodal config miwae > run.yaml")
    p.add_argument("model", metavar="MODEL", help=f"one of {', '.join(sorted(MODELS))}")

    p = command("fit", fit, "train a model as a config file says",
                "Train the model of CONFIG.yaml on its data. The run folder gets checkpoints, history.csv, the saved\n"
                "model with its data transform (model/), scores.json (held-out entries) and report.html.")
    p.add_argument("config", metavar="CONFIG.yaml", help="the run config (see `polymodal config MODEL`)")
    p.add_argument("--out", help="run folder (default: trainer.out, or runs/<config name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")

    p = command("impute", impute, "fill the missing cells of a file",
                "Fill every missing cell of IN (CSV, Parquet or NPZ; empty cells or NaN are missing) and write the\n"
                "same format and columns to OUT, observed cells unchanged.\n\n"
                "  polymodal impute MODEL_DIR IN [-o OUT]     with a model saved by `fit` or `impute --fit --save`\n"
                "  polymodal impute --fit IN -o OUT           fit an Imputer on IN itself, then fill IN\n\n"
                "--draws K writes K multiple imputations, OUT.draw1 ... OUT.drawK, each sampled from the model\n"
                "given the observed cells (sampling importance resampling).",
                usage="polymodal impute MODEL_DIR IN [-o OUT] [--draws K] [--samples S] [--seed S]\n"
                      "       polymodal impute --fit IN -o OUT [--model NAME] [--epochs N] [--save DIR] [--id COLUMN]")
    p.add_argument("paths", nargs="+", metavar="PATH", help="MODEL_DIR and IN, or with --fit only IN")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default: IN.imputed with IN's suffix)")
    p.add_argument("--draws", type=int, default=0, metavar="K", help="write K multiple imputations")
    p.add_argument("--samples", type=int, help="importance samples per imputation (default: the model's)")
    p.add_argument("--fit", action="store_true", help="fit an Imputer on IN itself first")
    p.add_argument("--model", default="miwae", help="with --fit: the model (default miwae)")
    p.add_argument("--epochs", type=int, default=500, help="with --fit: most training epochs (early stopping on 20%% of rows)")
    p.add_argument("--save", metavar="DIR", help="with --fit: also save the fitted imputer there")
    p.add_argument("--id", default="id", help="with --fit: a column of sample ids, copied and not modelled (default: id)")
    p.add_argument("--seed", type=int, default=0)

    p = command("predict", predict, "predict one modality from others",
                "Predict modality --target of every sample (every step, for sequences) in IN from the --inputs\n"
                "modalities (default: all others). Writes CSV to stdout, or -o OUT in the format of its suffix,\n"
                "with the columns the model does not use (e.g. id) first.")
    p.add_argument("folder", metavar="MODEL_DIR")
    p.add_argument("data", metavar="IN")
    p.add_argument("--target", required=True, help="the modality to predict (a column name or a group name)")
    p.add_argument("--inputs", help="comma-separated modalities to predict from (default: all others)")
    p.add_argument("-o", "--output", metavar="OUT")

    p = command("evaluate", evaluate_command, "score a saved model on held-out entries of a file",
                "Hide observed entries of DATA (MCAR at --mask-rate, or MAR / MNAR as the VSAE paper defines them),\n"
                "impute them and print per-modality scores on them: NRMSE for numeric modalities, accuracy and\n"
                "PFC for categorical ones, and the held-out log-likelihood per entry. Without DATA, a digits model\n"
                "(polymodal demo) is scored on the digits test split.")
    p.add_argument("folder", metavar="MODEL_DIR")
    p.add_argument("data", metavar="DATA", nargs="?")
    p.add_argument("--mask-rate", type=float, default=0.2, help="fraction of observed entries hidden (mcar)")
    p.add_argument("--mechanism", choices=MECHANISMS, default="mcar")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=100, help="importance samples per imputation")
    p.add_argument("--json", metavar="FILE", help="also write the scores as JSON")

    p = command("info", info, "describe a saved model",
                "Print the model, its modalities and data columns, options, version, size and training summary.")
    p.add_argument("folder", metavar="MODEL_DIR", help="a saved model folder or a run folder")

    p = command("report", report_command, "(re)write report.html of a run folder",
                "Write RUN_DIR/report.html: config, loss curves, scores and pictures of held-out imputations.\n"
                "RUN_DIR is a run folder of `polymodal fit`, or of `polymodal demo` (scored on the digits test split).")
    p.add_argument("folder", metavar="RUN_DIR")

    p = command("demo", demo, "train MVAE on digits with 10%% complete pairs, report and plot",
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


ERRORS = (ConfigError, DataError, ModelFileError, OSError, ValueError, KeyError, yaml.YAMLError)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except ERRORS as error:
        if args.debug:
            raise
        message = " ".join(str(error).split()) if not isinstance(error, KeyError) else str(error.args[0])
        print(f"polymodal {args.command}: error: {message}", file=sys.stderr)
        sys.exit(2)

