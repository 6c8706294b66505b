"""Runs from a YAML config: what ``polymodal fit`` trains, and the folder it writes.

The config has five sections; every key is checked, and an unknown one is an error that
names it, says where it is and suggests the nearest valid key (``polymodal config MODEL``
prints every key with its default)::

    data:      train (a file, or files joined on id), test, validation, id, time, na_values
    schema:    columns (per column: numeric, categorical or drop), groups, numeric
    model:     name, options (the model's config)
    trainer:   the Trainer's options
    evaluate:  mask_rate, mechanism, seed, samples (0: no importance sampling); null: no scores

A run folder holds ``config.yaml`` (the config, paths made absolute), the trainer's
``checkpoint.pt`` and ``history.csv``, ``model/`` (a saved model with its data transform),
``scores.json`` and ``report.html``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from .config import ConfigError, check_keys, make_config
from .data import Batch, DataError
from .datasets.files import read_files, sequence_file
from .evaluation import MECHANISMS, Evaluation, evaluate
from .files import write_json
from .models import MODELS, Model
from .persistence import TRANSFORM, load, load_transform
from .tables import SequenceSchema, TableSchema, Transform
from .training import TrainConfig, Trainer

KINDS = ("numeric", "categorical", "drop")


@dataclass
class DataSection:
    train: str | list[str] | None = None
    test: str | list[str] | None = None
    validation: float = 0.2
    id: str = "id"
    time: str | None = None
    na_values: list[str] = field(default_factory=list)


@dataclass
class SchemaSection:
    columns: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    numeric: str | dict | None = None


@dataclass
class ModelSection:
    name: str = "miwae"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvaluateSection:
    mask_rate: float = 0.2
    mechanism: str = "mcar"
    seed: int = 0
    samples: int | None = None  # None: 100, or 0 for a model without a density


@dataclass
class RunConfig:
    data: DataSection
    schema: SchemaSection = field(default_factory=SchemaSection)
    model: ModelSection = field(default_factory=ModelSection)
    trainer: dict[str, Any] = field(default_factory=dict)
    evaluate: EvaluateSection | None = field(default_factory=EvaluateSection)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataSection, "schema": SchemaSection, "model": ModelSection, "evaluate": EvaluateSection}


FITS = {  # what YAML may give where a field's default has this type
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    tuple: lambda v: isinstance(v, (list, tuple)),
    dict: lambda v: isinstance(v, dict),
}


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """Refuse values whose type differs from the default's (ints pass as floats, lists as tuples);
    fields whose default is None take anything, and the dataclass checks them."""
    for f in dataclasses.fields(cls):
        default = _default(f)
        fits = FITS.get(type(default))
        if values.get(f.name) is not None and fits is not None and not fits(values[f.name]):
            raise ConfigError(f"{where}.{f.name}: expected {type(default).__name__} like {default!r}, got {values[f.name]!r}")


def _section(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {values!r}")
    check_keys(values, [f.name for f in dataclasses.fields(cls)], where)
    _check_types(cls, values, where)
    return make_config(cls, values, where)


def parse_config(raw: Any, base: Path = Path(".")) -> RunConfig:
    """A :class:`RunConfig` from parsed YAML; relative data paths are taken from ``base``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping with sections {list(RunConfig.__dataclass_fields__)}, got {raw!r}")
    check_keys(raw, list(RunConfig.__dataclass_fields__), "config")
    if "data" not in raw or not isinstance(raw["data"], dict) or not raw["data"].get("train"):
        raise ConfigError("data.train: missing; give the training file (or a list of files joined on data.id)")
    sections = {name: _section(cls, raw[name], name) for name, cls in SECTIONS.items() if raw.get(name) is not None}
    data = sections["data"]
    for key in ("train", "test"):
        paths = getattr(data, key)
        if paths is not None:
            absolute = [str((base / p).resolve()) for p in ([paths] if isinstance(paths, str) else paths)]
            setattr(data, key, absolute[0] if isinstance(paths, str) else absolute)
    if not 0 <= data.validation < 1:
        raise ConfigError(f"data.validation: a fraction in [0, 1), got {data.validation}")
    if not isinstance(data.na_values, list) or not all(isinstance(v, str) for v in data.na_values):
        raise ConfigError(f"data.na_values: expected a list of text markers such as [NA, '?'] (quote null, true and "
                          f"numbers), got {data.na_values!r}")
    schema = sections.get("schema", SchemaSection())
    for column, kind in schema.columns.items():
        if kind not in KINDS:
            raise ConfigError(f"schema.columns.{column}: expected one of {list(KINDS)}, got {kind!r}")
    model = sections.get("model", ModelSection())
    check_keys([model.name], sorted(MODELS), "model.name", "models")
    _section(MODELS[model.name].Config, model.options, "model.options")
    trainer = dict(raw.get("trainer") or {})
    _section(TrainConfig, trainer, "trainer")
    evaluation = sections.get("evaluate", EvaluateSection()) if "evaluate" not in raw or raw["evaluate"] is not None else None
    if evaluation is not None and evaluation.mechanism not in MECHANISMS:
        raise ConfigError(f"evaluate.mechanism: expected one of {list(MECHANISMS)}, got {evaluation.mechanism!r}")
    if evaluation is not None and evaluation.samples is None:
        evaluation.samples = 100 if MODELS[model.name].has_density else 0
    if evaluation is not None and evaluation.samples and not MODELS[model.name].has_density:
        raise ConfigError(f"evaluate.samples: model {model.name} defines no density to importance-sample; "
                          f"set samples: 0 (impute from the codes), got {evaluation.samples}")
    return RunConfig(data, schema, model, trainer, evaluation)


def load_config(path: str | Path) -> RunConfig:
    """Read and check a run config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    return parse_config(raw, path.parent)


def for_sequences(cls: type[Model]) -> bool:
    """Whether a model is one for sequences (as its class declares: MDMM, DKS)."""
    return cls.data == "sequences"


def _yaml_value(value: Any) -> str:
    value = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _options(cls: type, indent: str) -> list[str]:
    lines = []
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        default = _default(f)
        lines.append(f"{indent}{f.name}: {_yaml_value(default)}".ljust(24) + f" # {hints[f.name]}")
    return lines


def example_config(model: str) -> str:
    """A commented config for ``model`` with every option at its default."""
    check_keys([model], sorted(MODELS), "polymodal config", "models")
    cls = MODELS[model]
    doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or cls.__name__).strip()
    summary = doc.splitlines()[0]
    sequences = for_sequences(cls)
    lines = [
        f"# polymodal fit config for {model} ({cls.__name__}): {summary}",
        "# Every key is checked: a misspelled one is an error. Paths are relative to this file.",
        "data:",
        "  train: train.csv       # a CSV, Parquet or NPZ file, or a list of files joined on `id`",
        "  test: null             # scored after training; default: the validation rows",
        "  validation: 0.2        # fraction of training samples held out (early stopping, scores)",
        "  id: id                 # the column joining several files; the sequence id in long format",
        f"  time: {'time' if sequences else 'null':<16} # long-format sequences: the time column (NPZ [N, T, F]: not needed)",
        "  na_values: []          # text marking missing cells besides empty cells and NaN, e.g. [NA, '?']",
        "schema:                  # inferred: numeric columns Gaussian, categorical and string columns categorical",
        "  columns: {}            # per column: numeric, categorical or drop, e.g. {grade: categorical, name: drop}",
        "  groups: {}             # numeric columns as one vector modality, e.g. {blood: [systolic, diastolic]}",
        "  numeric: null          # likelihood of numeric columns (default: gaussian of scale 0.1 on [0, 1]-scaled values)",
        "model:",
        f"  name: {model}".ljust(24) + f" # one of {', '.join(sorted(MODELS))}",
        "  options:",
        *_options(cls.Config, "    "),
        "trainer:                 # polymodal.Trainer's options; out is the run folder (fit --out)",
        *_options(TrainConfig, "  "),
        "evaluate:                # hide observed entries of the test data, impute and score them (null: skip)",
        "  mask_rate: 0.2         # MCAR rate; mar and mnar follow the VSAE paper's definitions, not this rate",
        f"  mechanism: mcar        # one of {', '.join(MECHANISMS)}",
        "  seed: 0",
        f"  samples: {100 if cls.has_density else 0:<15} # importance samples per imputation (0: from the posterior mean)",
    ]
    return "\n".join(lines) + "\n"


def make_transform(config: RunConfig, frame: pd.DataFrame, sequences: bool) -> tuple[Transform, list[str]]:
    """The table or sequence schema of ``frame`` with the config's overrides (not yet fitted),
    and the columns it models: all but the id (and time) columns and those dropped."""
    s, d = config.schema, config.data
    keys = [d.id, d.time or "time"] if sequences else [d.id]
    unknown = sorted(set(s.columns) - set(frame.columns))
    if unknown:
        raise ConfigError(f"schema.columns names {unknown}, which the data does not have; it has {list(frame.columns)}")
    values = [c for c in frame.columns if c not in keys and s.columns.get(c) != "drop"]
    inferred = TableSchema().fit(frame[values]).categories_
    categorical = [c for c in values if (c in inferred or s.columns.get(c) == "categorical") and s.columns.get(c) != "numeric"]
    if sequences:
        return SequenceSchema(keys[0], keys[1], categorical, s.groups or None, s.numeric, d.na_values), keys + values
    return TableSchema(categorical, s.groups or None, s.numeric, d.na_values), values


def read_data(config: RunConfig, paths: str | list[str]) -> tuple[pd.DataFrame, bool]:
    """The joined data of ``paths`` and whether it is sequences."""
    d = config.data
    listed = [paths] if isinstance(paths, str) else paths
    sequences = d.time is not None or any(sequence_file(p) for p in listed)
    return read_files(listed, d.id, (d.time or "time") if sequences else None, d.na_values), sequences


def split(config: RunConfig, batch: Batch) -> tuple[Batch, Batch | None]:
    """Training and validation samples: a ``data.validation`` fraction, drawn with the trainer's seed."""
    order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(config.trainer.get("seed", 0)))
    held = int(config.data.validation * len(batch))
    if held == len(batch):
        raise DataError(f"data.validation={config.data.validation} leaves no training samples out of {len(batch)}")
    return batch.select(order[held:]), batch.select(order[:held]) if held else None


def fit(config: RunConfig, out: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train the config's model on its data into the run folder ``out``; returns ``out``."""
    out = Path(out)
    frame, sequences = read_data(config, config.data.train)
    kind = MODELS[config.model.name]
    if sequences != for_sequences(kind):
        fitting = sorted(n for n, m in MODELS.items() if for_sequences(m) == sequences)
        raise ConfigError(f"model.name: {config.model.name} does not model {'sequences' if sequences else 'tables'};"
                          f" models that do: {fitting}")
    transform, columns = make_transform(config, frame, sequences)
    train, valid = split(config, transform.fit(frame[columns]).transform(frame))
    options = {**config.trainer, "out": str(out), "progress": progress and config.trainer.get("progress", True)}
    torch.manual_seed(options.get("seed", 0))
    model = kind(transform.schema_, **config.model.options)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.as_dict(), sort_keys=False))
    Trainer(model, options).fit(train, valid, resume=resume)
    folder = model.save(out / "model")
    write_json(folder / TRANSFORM, transform.config())
    evaluation = score(out, config, model, transform, valid, progress)
    from .report import write_report  # report draws with matplotlib: imported only when a run is written

    write_report(out, evaluation)
    return out


def scoring_batch(config: RunConfig, transform: Transform, valid: Batch | None) -> Batch:
    """The data a run is scored on: the test files, or else the validation samples."""
    if config.data.test is not None:
        return transform.transform(read_data(config, config.data.test)[0])
    if valid is None:
        raise ConfigError("evaluate: no data to score; give data.test or a data.validation fraction, or set evaluate: null")
    return valid


def score(out: Path, config: RunConfig, model: Model, transform: Transform, valid: Batch | None,
          progress: bool) -> Evaluation | None:
    """Evaluate the run as its config says and write ``scores.json``."""
    if config.evaluate is None:
        return None
    e = config.evaluate
    evaluation = evaluate(model, scoring_batch(config, transform, valid), e.mask_rate, e.mechanism, e.seed, e.samples, progress)
    write_json(out / "scores.json", evaluation.scores)
    return evaluation


def load_run(run: str | Path) -> tuple[RunConfig, Model, Transform]:
    """The config, trained model and data transform of a run folder."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run} is not a run folder of `polymodal fit`: config.yaml is missing")
    config = parse_config(yaml.safe_load((run / "config.yaml").read_text()), run)
    return config, load(run / "model"), load_transform(run / "model")


def rescore(run: str | Path, progress: bool = False) -> Evaluation | None:
    """Score a run folder again as ``fit`` did (same data, split and hidden entries)."""
    config, model, transform = load_run(run)
    valid = None
    if config.data.test is None:
        valid = split(config, transform.transform(read_data(config, config.data.train)[0]))[1]
    return score(Path(run), config, model, transform, valid, progress)
