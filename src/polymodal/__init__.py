"""polymodal: generative models of incomplete multimodal data."""

__version__ = "0.1.0"

from . import missing  # noqa: E402
from .config import ConfigError  # noqa: E402
from .data import Batch, DataError, concat  # noqa: E402
from .datasets import generate_spirals, load_digit_styles, load_digits, load_spirals  # noqa: E402
from .gaussian import Experts, Gaussian, NonPositivePrecisionError, kl_divergence, log_mean_exp, moment_match, w2  # noqa: E402
from .imputer import Imputer  # noqa: E402
from .likelihoods import Bernoulli, Categorical, Laplace, Likelihood, Observation  # noqa: E402
from .likelihoods import Gaussian as GaussianLikelihood  # noqa: E402
from .modalities import Modality, Schema  # noqa: E402
from .models import (  # noqa: E402
    DKS,
    MDMM,
    MEME,
    MIWAE,
    MMVAE,
    MODELS,
    MVAE,
    VSAE,
    DKSConfig,
    LossOutput,
    MDMMConfig,
    MEMEConfig,
    MIWAEConfig,
    MMVAEConfig,
    Model,
    MoPoE,
    MoPoEConfig,
    MVAEConfig,
    VSAEConfig,
    ZeroFillVAE,
    ZeroFillVAEConfig,
)
from .persistence import ModelFileError, load  # noqa: E402
from .tables import TableSchema  # noqa: E402
from .training import NonFiniteLossError, Schedule, TrainConfig, Trainer  # noqa: E402

__all__ = [
    "Batch", "Bernoulli", "Categorical", "ConfigError", "DKS", "DKSConfig", "DataError", "Experts", "Gaussian",
    "GaussianLikelihood", "Imputer", "Laplace", "Likelihood", "LossOutput", "MDMM", "MDMMConfig", "MEME", "MEMEConfig",
    "MIWAE", "MIWAEConfig", "MMVAE", "MMVAEConfig", "MoPoE", "MoPoEConfig", "MODELS", "MVAE", "MVAEConfig", "Modality", "Model",
    "ModelFileError", "TableSchema", "VSAE", "VSAEConfig", "ZeroFillVAE", "ZeroFillVAEConfig",
    "NonFiniteLossError", "NonPositivePrecisionError", "Observation", "Schedule", "Schema", "TrainConfig", "Trainer",
    "concat", "generate_spirals", "kl_divergence", "load", "load_digit_styles", "load_digits", "load_spirals", "log_mean_exp",
    "missing", "moment_match", "w2",
]
