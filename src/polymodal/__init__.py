"""polymodal: generative models of incomplete multimodal data.

The public names below are imported on first use (PEP 562), so that ``import polymodal``
and the ``polymodal`` command start without loading torch, pandas or scikit-learn until
something needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, name in it)
_EXPORTS = {
    **{name: ("config", name) for name in ("ConfigError",)},
    **{name: ("data", name) for name in ("Batch", "DataError", "concat")},
    **{name: ("datasets", name) for name in ("generate_spirals", "load_basic_motions", "load_digit_styles", "load_digits",
                                             "load_japanese_vowels", "load_mnist_subset", "load_physionet2012", "load_polymnist",
                                             "load_spirals", "read_files", "read_frame", "write_frame")},
    **{name: ("gaussian", name) for name in ("Experts", "Gaussian", "NonPositivePrecisionError", "kl_divergence",
                                             "Mixture", "iw_bound", "log_mean_exp", "moment_match", "w2")},
    **{name: ("imputer", name) for name in ("Imputer", "load_imputer")},
    **{name: ("mixture", name) for name in ("GaussianMixture",)},
    **{name: ("likelihoods", name) for name in ("Bernoulli", "Categorical", "Laplace", "Likelihood", "Observation")},
    "GaussianLikelihood": ("likelihoods", "Gaussian"),
    **{name: ("modalities", name) for name in ("Modality", "Schema")},
    **{name: ("models", name) for name in ("DKS", "DKSConfig", "JMVAE", "JMVAEConfig", "LatentConfig", "LossOutput",
                                           "NeverObservedWarning", "PerModality", "MDMM", "MDMMConfig", "MEME", "MEMEConfig",
                                           "MFM", "MFMConfig", "MIWAE", "MIWAEConfig", "MMVAE", "MMVAEConfig", "MMVAEPlus",
                                           "MMVAEPlusConfig", "MODELS", "MVTCAE", "MVTCAEConfig",
                                           "MVAE", "MVAEConfig",
                                           "Model", "MoPoE", "MoPoEConfig", "VSAE", "VSAEConfig", "ZeroFillVAE",
                                           "ZeroFillVAEConfig", "auto_weights")},
    **{name: ("persistence", name) for name in ("ModelFileError", "load")},
    **{name: ("tables", name) for name in ("SequenceSchema", "TableSchema")},
    **{name: ("training", name) for name in ("NonFiniteLossError", "Schedule", "TrainConfig", "Trainer")},
}
_MODULES = ("missing", "gaussian", "likelihoods", "nets", "metrics", "report", "files", "tables", "data", "models",
            "datasets", "training", "persistence", "evaluation", "config", "mixture", "candidates", "imputer")

__all__ = sorted([*_EXPORTS, "missing"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_MODULES})
