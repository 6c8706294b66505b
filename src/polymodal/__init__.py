"""polymodal: generative models of incomplete multimodal data."""

from . import missing
from .data import Batch, DataError, concat
from .datasets import load_digits
from .gaussian import Gaussian, NonPositivePrecisionError, combine, kl_divergence, log_mean_exp, moment_match, w2
from .likelihoods import Bernoulli, Categorical, Laplace, Likelihood, Observation
from .likelihoods import Gaussian as GaussianLikelihood
from .modalities import Modality, Schema
from .models import MODELS, MVAE, ConfigError, LossOutput, Model, MVAEConfig
from .training import TrainConfig, Trainer

__version__ = "0.1.0"

__all__ = [
    "Batch", "Bernoulli", "Categorical", "ConfigError", "DataError", "Gaussian", "GaussianLikelihood",
    "Laplace", "Likelihood", "LossOutput", "MODELS", "MVAE", "MVAEConfig", "Modality", "Model",
    "NonPositivePrecisionError", "Observation", "Schema", "TrainConfig", "Trainer", "combine", "concat",
    "kl_divergence", "load_digits", "log_mean_exp", "missing", "moment_match", "w2",
]
