"""Models, one file per method, registered by name in ``MODELS``."""

from .base import MODELS, LatentConfig, LossOutput, Model, NeverObservedWarning, PerModality
from .baselines import ZeroFillVAE, ZeroFillVAEConfig
from .dks import DKS, DKSConfig
from .mdmm import MDMM, MDMMConfig
from .meme import MEME, MEMEConfig
from .mfm import MFM, MFMConfig
from .miwae import MIWAE, MIWAEConfig
from .mmvae import MMVAE, MMVAEConfig
from .mopoe import MoPoE, MoPoEConfig
from .mvae import MVAE, MVAEConfig
from .vsae import VSAE, VSAEConfig

__all__ = [
    "DKS", "DKSConfig", "MDMM", "MEME", "MEMEConfig", "MDMMConfig", "MFM", "MFMConfig", "MIWAE", "MODELS", "MVAE", "VSAE",
    "LatentConfig", "LossOutput", "NeverObservedWarning", "PerModality",
    "MIWAEConfig", "MMVAE", "MMVAEConfig", "MoPoE", "MoPoEConfig",
    "MVAEConfig", "Model", "VSAEConfig", "ZeroFillVAE", "ZeroFillVAEConfig",
]
