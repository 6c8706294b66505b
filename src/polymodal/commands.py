"""What each ``polymodal`` command does; :mod:`polymodal.cli` parses the command line and
imports this module only once a command is to run, so that ``polymodal --help`` starts fast."""


from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from .config import ConfigError
from .data import Batch, DataError, concat
from .datasets import load_digits
from .datasets.digits import digits_schema
from .datasets.files import FrameWriter, about, check_output, read_chunks, read_frame, sample_rows, sequence_file, write_frame
from .evaluation import FEW, baseline_fills, baseline_scores, draw_imputations, evaluate, metric, worse
from .files import check_writable
from .metrics import cross_modal
from .models import MVAE
from .persistence import TRANSFORM, ModelFileError, load, load_transform
from .progress import chunked, counted
from .tables import SequenceSchema, Transform
from .training import NonFiniteLossError, Trainer


def report(scores: dict[str, float]) -> None:
    print(f"label accuracy from images alone: {scores['label_accuracy_from_image']:.3f}")
    print(f"image MSE from labels alone:     {scores['image_mse_from_label']:.4f}")


def score_lines(scores: dict[str, dict]) -> tuple[list[str], str | None]:
    """A table of scores beside their baselines, one line per modality (! marks a score
    worse than a baseline), and a one-line warning naming those, if any."""
    baselines = list(dict.fromkeys(b for s in scores.values() for b in s.get("baselines", {})))
    likelihood = any("log_likelihood" in s for s in scores.values())
    rows = [["modality", "entries", "metric", "model", *baselines, *(["log_likelihood"] if likelihood else [])]]
    for name, s in scores.items():
        key = metric(s)
        found = s.get("baselines", {})
        rows.append([name, str(s["entries"]), key, f"{s[key]:.4g}" + ("!" if s.get("worse_than") else ""),
                     *(f"{found[b][key]:.4g}" if b in found else "" for b in baselines),
                     *([f"{s['log_likelihood']:.4g}" if "log_likelihood" in s else ""] if likelihood else [])])
    lines = aligned(rows, left=(0,))
    flagged = [f"{name} ({metric(s)} {s[metric(s)]:.4g}; " + ", ".join(f"{b} {s['baselines'][b][metric(s)]:.4g}"
                                                                     for b in s["worse_than"]) + ")"
               for name, s in scores.items() if s.get("worse_than")]
    few = [name for name, s in scores.items() if s["entries"] < FEW]
    if few:
        lines.append(f"note: fewer than {FEW} hidden entries scored in {few}: chance moves their scores much")
    warning = None
    if flagged:
        warning = (f"warning: the model imputes the hidden entries worse than a simple baseline on the same entries "
                   f"(marked !): {'; '.join(flagged)}")
    return lines, warning


def aligned(rows: list[list[str]], left: tuple[int, ...]) -> list[str]:
    """Rows of cells as lines of aligned columns: those at ``left`` flush left, the others (numbers) right."""
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if j in left else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def show(lines: list[str], warning: str | None) -> None:
    """Lines to stdout, a warning to stderr."""
    print("\n".join(lines))
    if warning:
        print(warning, file=sys.stderr)


def demo(args: argparse.Namespace) -> None:
    """Train MVAE on digits where only a fraction of pairs is complete; report and plot."""
    from .report import plot_history, plot_image_label, write_report

    out = check_writable(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}", "--out", folder=True)
    train, test = load_digits(paired=args.paired, seed=args.seed)
    model = MVAE(train.schema, latent_dim=16, hidden=(256, 256), weights={"label": 50.0}, cross=True)
    trainer = Trainer(
        model, epochs=args.epochs, batch_size=64, kl_warmup=args.epochs / 3, seed=args.seed, device=args.device,
        out=str(out), checkpoint_every=args.checkpoint_every, tensorboard=args.tensorboard, progress=not args.quiet,
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


def read(transform: Transform, path: str, na_values: list[str], absent: tuple[str, ...] = ()):
    """A file as the model's transform reads it: the frame and its batch, with the model's and
    ``na_values``' missing-value markers. Columns named in ``absent`` may be missing from the
    file (they are then missing for every sample)."""
    sequence = isinstance(transform, SequenceSchema)
    markers = [*map(str, transform.na_values), *na_values]
    frame = read_frame(path, transform.id, transform.time, markers) if sequence else read_frame(path, na_values=markers)
    given = frame.assign(**{c: np.nan for c in absent if c not in frame.columns})
    with about(path):
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
    check_writable(out, "--out" if args.out else "trainer.out" if config.trainer.get("out") else "the run folder", folder=True)
    fit_run(config, out, resume=args.resume, override=args.override, progress=not args.quiet)
    if config.evaluate is not None:
        print(f"scores on {config.evaluate.mask_rate:.0%} hidden entries of the "
              f"{'test' if config.data.test else 'validation'} data, beside simple baselines (lower is better):")
        show(*score_lines(json.loads((Path(out) / "scores.json").read_text())))
    print(f"run written to {out}/ (model/, history.csv, scores.json, report.html)")


# impute reads, fills and writes a table this many rows at a time (a multiple of 256, see Imputer.transform_chunks).
CHUNK_ROWS = 1 << 16
# impute --fit fits the Imputer on a uniform sample of at most this many rows of the file.
FIT_ROWS = 200_000


def impute(args: argparse.Namespace) -> None:
    """Fill the missing cells of a file with a saved model, or with one fitted on the file."""
    if args.fit:
        return impute_fit(args)
    if len(args.paths) != 2:
        raise ConfigError("impute: give MODEL_DIR and IN (or --fit IN to fit a model on IN itself)")
    folder, source = model_folder(args.paths[0]), args.paths[1]
    out = check_output(output_path(args.output, source, "imputed"), "-o")
    if (folder / "imputer.json").is_file() or not (folder / TRANSFORM).is_file() or \
            not isinstance(load_transform(folder), SequenceSchema):
        return impute_table(args, folder, source, out)
    model, transform = load(folder), load_transform(folder)
    frame, batch = read(transform, source, args.na_values)
    options = {} if args.samples is None else {"samples": args.samples}
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


def impute_table(args: argparse.Namespace, folder: Path, source: str, out: Path) -> None:
    """``impute`` of a table with a saved Imputer (or a model `fit` on a table): the file is
    read, filled and written ``CHUNK_ROWS`` rows at a time, so it may be larger than memory."""
    from .imputer import load_imputer

    imputer = load_imputer(folder)
    if args.samples is not None:
        imputer.set_params(samples=args.samples)
    elif not (folder / "imputer.json").is_file():  # a fitted model's own default: its posterior mean, or 100 to draw
        imputer.set_params(samples=100 if args.draws else 0)
    imputer.set_params(random_state=args.seed, progress=not args.quiet)
    markers = [*map(str, imputer.tables_.na_values), *args.na_values]
    chunks = checked_columns(read_chunks(source, CHUNK_ROWS, markers), imputer.tables_.columns_, source)
    if args.draws:
        paths = [out.with_name(f"{out.stem}.draw{k + 1}{out.suffix}") for k in range(args.draws)]
        with ExitStack() as files:
            files.enter_context(about(source))
            writers = [files.enter_context(FrameWriter(path, source)) for path in paths]
            for tables in imputer.sample_chunks(chunks, args.draws):
                for writer, table in zip(writers, tables):
                    writer.write(table)
        print(f"{args.draws} imputations written to {out.with_name(f'{out.stem}.draw*{out.suffix}')}")
        return
    with about(source), FrameWriter(out, source) as writer:
        for table in imputer.transform_chunks(chunks):
            writer.write(table)
    print(f"imputed table written to {out}")


def checked_columns(chunks: Iterator[pd.DataFrame], columns: list, source: str) -> Iterator[pd.DataFrame]:
    """The chunks of ``source``, checked for the columns an imputer fills."""
    for chunk in chunks:
        absent = [c for c in columns if c not in chunk.columns]
        if absent:
            raise DataError(f"{source}: the imputer's columns {absent} are missing; it fills {columns}")
        yield chunk


def impute_fit(args: argparse.Namespace) -> None:
    """``impute --fit``: an Imputer fitted on a uniform sample of at most ``FIT_ROWS`` rows of
    the file (one pass to draw it, the whole file when it is smaller), then a second pass that
    fills the file chunk by chunk."""
    from .imputer import Imputer

    if len(args.paths) != 1:
        raise ConfigError(f"impute --fit: give one input file, got {args.paths}")
    source = args.paths[0]
    out = check_output(output_path(args.output, source, "imputed"), "-o")
    if args.save:
        check_writable(args.save, "--save", folder=True)
    if sequence_file(source):
        raise ConfigError(f"impute --fit fills tables, and {source} holds sequences [N, T, F]; train a sequence model "
                          "(mdmm or dks) with `polymodal fit CONFIG.yaml`, then `polymodal impute RUN_DIR IN`")
    chunks = counted(read_chunks(source, CHUNK_ROWS, args.na_values), "read", not args.quiet)
    sample = sample_rows(chunks, FIT_ROWS, args.seed)
    columns = list(sample.columns)
    if args.id is not None and args.id not in columns:
        raise DataError(f"--id {args.id!r}: {source} has no such column; it has {columns}")
    values = sample.drop(columns=[c for c in columns if c == (args.id or "id")])
    del sample
    if values.shape[1] == 0:
        raise DataError(f"{source}: no columns to fill; it has only {columns}, and the id column "
                        f"{args.id or 'id'!r} is copied, not modelled")
    # a file written back keeps its integer columns whole, as `impute MODEL` with a fitted table model does
    options = {"steps": args.steps, "round_integers": True, **({} if args.samples is None else {"samples": args.samples})}
    with about(source):
        imputer = Imputer(model=args.model, random_state=args.seed, progress=not args.quiet, **options).fit(values)
    show(*imputer_lines(imputer, values))
    del values
    with FrameWriter(out, source) as writer:
        for table in imputer.transform_chunks(read_chunks(source, CHUNK_ROWS, args.na_values)):
            writer.write(table)
    if args.save:
        imputer.tables_.na_values = args.na_values  # saved with it, so that `impute DIR IN` reads IN alike
        imputer.save(args.save)
        print(f"imputer saved to {args.save}/")
    print(f"imputed table written to {out}")


def held_out_cells(imputer, values) -> tuple[Batch, Batch, dict[str, dict[str, torch.Tensor]]] | None:
    """The cells a fitted :class:`~polymodal.Imputer` held out of ``values`` (its training
    table) to score and blend its candidates, drawn as its ``fit`` draws them: the held-out
    rows, the same rows with those cells hidden, and the baselines' fills of the rows from
    every cell the imputer trained on. None if it held out none."""
    rows, truth, hidden, held = imputer.validation_split(imputer.tables_.transform(values))
    if truth is None:
        return None
    return truth, hidden, {n: {b: v[held] for b, v in f.items()} for n, f in baseline_fills(rows).items()}


def imputer_lines(imputer, values) -> tuple[list[str], str | None]:
    """What ``impute --fit`` fitted: per column its held-out cells, the blend's score on them
    beside the column mean's (mode's), and the candidates' weights; the overall held-out
    score; and a one-line warning naming the columns where the blend is worse than the
    baseline, if any."""
    cells = held_out_cells(imputer, values)
    if cells is None or np.isnan(imputer.validation_score_):
        candidates = ", ".join(imputer.weights_.columns)
        return [f"imputer: {candidates}; no cells could be held out to score it"], None
    truth, hidden, fills = cells
    found = baseline_scores(truth, hidden, fills)
    names = list(imputer.weights_.columns)
    rows = [["column", "held-out cells", "metric", "imputer", "mean/mode", *names, "chose"]]
    flagged, baselines = [], []
    for column, score in imputer.validation_scores_.items():
        m = truth.schema[column]
        key, baseline = ("pfc", "mode") if m.categorical else ("nrmse", "mean")
        value = found[column][baseline][key] if column in found else float("nan")
        if not np.isnan(score):
            baselines.append(value)
        bad = worse(score, value)
        if bad:
            flagged.append(f"{column} ({key} {score:.4g}; {baseline} {value:.4g})")
        entries = int((truth.observed[column] & ~hidden.observed[column]).sum())
        rows.append([str(column), str(entries), key, f"{score:.4g}" + ("!" if bad else ""), f"{value:.4g}",
                     *(f"{imputer.weights_.loc[column, n]:.1f}" for n in names), str(imputer.choice_[column])])
    lines = aligned(rows, left=(0, len(rows[0]) - 1))
    overall = np.nanmean(baselines)
    few = [str(r[0]) for r in rows[1:] if int(r[1]) < FEW]
    if few:
        lines.append(f"note: fewer than {FEW} held-out cells in {few}: chance moves their scores much")
    lines.insert(0, f"imputer: held-out score {imputer.validation_score_:.4g} (mean over columns; column mean/mode "
                    f"{overall:.4g}; lower is better); candidates' weights per column:")
    warning = None
    if flagged:
        warning = ("warning: the imputer fills held-out cells worse than the column's mean or mode (marked !): "
                   + "; ".join(flagged))
    return lines, warning


def predict(args: argparse.Namespace) -> None:
    """Predict one modality from others, for every sample (every step) of a file."""
    folder = model_folder(args.folder)
    if args.output:
        check_output(args.output, "-o")
    model, transform = load(folder), load_transform(folder)
    if args.target not in model.schema:
        raise DataError(f"--target {args.target!r} is not a modality of the model; it has {model.schema.names}")
    inputs = args.inputs.split(",") if args.inputs else None
    unknown = sorted(set(inputs or ()) - set(model.schema.names))
    if unknown:
        raise DataError(f"--inputs {unknown} are not modalities of the model; it has {model.schema.names}")
    tables = transform.tables_ if isinstance(transform, SequenceSchema) else transform
    columns = tables.modality_columns_[args.target]
    frame, batch = read(transform, args.data, args.na_values, absent=tuple(columns))
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
    if args.json:
        check_writable(args.json, "--json")
    model = load(folder)
    if args.data is None:
        if (folder / TRANSFORM).is_file() or model.schema != digits_schema():
            raise ConfigError("evaluate: give DATA, the file to score the model on")
        _, test = load_digits()
        report(cross_modal(model, test))
        return
    _, batch = read(load_transform(folder), args.data, args.na_values)
    samples = (100 if model.has_density else 0) if args.samples is None else args.samples
    result = evaluate(model, batch, args.mask_rate, args.mechanism, args.seed, samples, progress=not args.quiet)
    if not result.scores:
        raise DataError(f"{args.data}: nothing was hidden to score (no observed entries, or --mask-rate 0)")
    show(*score_lines(result.scores))
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


ERRORS = (ConfigError, DataError, ModelFileError, NonFiniteLossError, OSError, ValueError, KeyError, yaml.YAMLError)
