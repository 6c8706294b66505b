"""Models, one file per method, registered by name in ``MODELS``."""

from .base import MODELS, ConfigError, LossOutput, Model
from .mvae import MVAE, MVAEConfig

__all__ = ["MODELS", "ConfigError", "LossOutput", "MVAE", "MVAEConfig", "Model"]
