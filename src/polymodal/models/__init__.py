"""Models, one file per method, registered by name in ``MODELS``."""

from .base import MODELS, LatentConfig, LossOutput, Model, NeverObservedWarning, PerModality, auto_weights
from .baselines import ZeroFillVAE, ZeroFillVAEConfig
from .dks import DKS, DKSConfig
from .jmvae import JMVAE, JMVAEConfig
from .mdmm import MDMM, MDMMConfig
from .meme import MEME, MEMEConfig
from .mfm import MFM, MFMConfig
from .miwae import MIWAE, MIWAEConfig
from .mmvae import MMVAE, MMVAEConfig
from .mmvaeplus import MMVAEPlus, MMVAEPlusConfig
from .mopoe import MoPoE, MoPoEConfig
from .mvae import MVAE, MVAEConfig
from .mvtcae import MVTCAE, MVTCAEConfig
from .vsae import VSAE, VSAEConfig

__all__ = [
    "DKS", "DKSConfig", "MDMM", "MEME", "MEMEConfig", "MDMMConfig", "MFM", "MFMConfig", "MIWAE", "MODELS", "MVAE", "VSAE",
    "LatentConfig", "LossOutput", "NeverObservedWarning", "PerModality",
    "JMVAE", "JMVAEConfig", "MIWAEConfig", "MMVAE", "MMVAEConfig", "MMVAEPlus", "MMVAEPlusConfig", "MoPoE", "MoPoEConfig",
    "MVTCAE", "MVTCAEConfig",
    "MVAEConfig", "Model", "VSAEConfig", "ZeroFillVAE", "ZeroFillVAEConfig", "auto_weights",
]
