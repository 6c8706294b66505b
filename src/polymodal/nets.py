"""Networks: MLP, a small conv encoder/decoder for images, and the default nets of a Modality.

Encoders map one modality's values ``[*lead, *features]`` to a Gaussian expert over the
latent ``[*lead, latent]``; decoders map ``[*lead, latent]`` to likelihood parameters
``[*lead, *features, n_params]`` (logits, never probabilities). ``lead`` is any number of
leading axes (batch, time, samples), flattened for the network and restored after.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gaussian import Gaussian, widen
from .modalities import Modality


def silu(x: Tensor) -> Tensor:
    """SiLU, x * sigmoid(x). On the CPU it is written out: there PyTorch's gradient of
    ``F.silu`` took 20 ms for a ``[3, 16, 100, 64]`` tensor against 1 ms for the two ops (PyTorch
    2.13), the largest cost of a sequence model's training step; the values agree to rounding."""
    return x * torch.sigmoid(x) if x.device.type == "cpu" else F.silu(x)


class SiLU(nn.SiLU):
    """``nn.SiLU`` computed by :func:`silu`."""

    def forward(self, x: Tensor) -> Tensor:
        return silu(x)


class MLP(nn.Sequential):
    """Linear layers with ``activation`` (SiLU) between them; none after the last."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, activation: type[nn.Module] = SiLU):
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation())
        super().__init__(*layers)


def _image_dims(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]


def _halvings(size: int, channels: Sequence[int]) -> list[int]:
    sizes = [size]
    for _ in channels:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class ConvEncoder(nn.Module):
    """Stride-2 3x3 convolutions (one per entry of ``channels``, ``activation`` after each),
    then a linear layer."""

    def __init__(self, shape: tuple[int, ...], channels: Sequence[int], out_features: int,
                 activation: type[nn.Module] = SiLU):
        super().__init__()
        c, h, w = _image_dims(shape)
        self.shape = shape
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [nn.Conv2d(c, c_out, 3, stride=2, padding=1), activation()]
            c = c_out
        self.convs = nn.Sequential(*layers)
        hs, ws = _halvings(h, channels), _halvings(w, channels)
        self.head = nn.Linear(c * hs[-1] * ws[-1], out_features)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, *_image_dims(self.shape))
        return self.head(self.convs(x).flatten(1))


class CroppedConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that, in bf16 on the CPU, computes an output cut short of the
    full ``stride * n`` size (``output_padding < stride - 1``) as the full one cropped.
    ``output_padding`` only appends rows and columns, so the values are the same; but oneDNN's
    bf16 kernel for the short size is slow (PyTorch 2.13: 5.7 ms against 1.1 ms for a batch of
    64 from 128 x 4 x 4 to 64 x 7 x 7), and cropping makes a step of MultiVae's PolyMNIST
    nets 1.07-1.16x faster. In fp32, and on CUDA, the layer's own kernel is as fast or faster."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        short = [s - 1 - p for s, p in zip(self.stride, self.output_padding)]
        bf16 = x.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu")
        if output_size is not None or x.device.type != "cpu" or not bf16 or not any(short):
            return super().forward(x, output_size)
        full = [s - 1 for s in self.stride]
        y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, full, self.groups, self.dilation)
        return y[..., : y.shape[-2] - short[0], : y.shape[-1] - short[1]]


class ConvDecoder(nn.Module):
    """A linear layer, then stride-2 transposed convolutions back to the exact image size,
    ``activation`` between them."""

    def __init__(self, in_features: int, channels: Sequence[int], shape: tuple[int, ...], n_params: int,
                 activation: type[nn.Module] = SiLU):
        super().__init__()
        c, h, w = _image_dims(shape)
        hs, ws = _halvings(h, channels), _halvings(w, channels)
        self.start = (channels[-1], hs[-1], ws[-1])
        self.shape, self.n_params = shape, n_params
        self.head = nn.Linear(in_features, channels[-1] * hs[-1] * ws[-1])
        self.activation = activation()
        outs = [*reversed(channels[:-1]), c * n_params]
        layers: list[nn.Module] = []
        c_in = channels[-1]
        for i, c_out in enumerate(outs):
            level = len(channels) - 1 - i  # size index we upsample to
            pad = (1 - hs[level] % 2, 1 - ws[level] % 2)
            layers.append(CroppedConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=pad))
            if i < len(outs) - 1:
                layers.append(activation())
            c_in = c_out
        self.convs = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        x = self.convs(self.activation(self.head(z)).view(-1, *self.start))  # [N, c * P, h, w]
        c, h, w = _image_dims(self.shape)
        return x.view(-1, self.n_params, c, h, w).movedim(1, -1).reshape(-1, *self.shape, self.n_params)


MIN_VAR = 1e-4  # the variance floor of every encoder: a product of many experts cannot overflow


class ExpertHead(nn.Module):
    """Features -> Gaussian expert, the one Gaussian head of every encoder. Variance is
    ``softplus + min_var``, or a sigmoid between ``min_var`` and ``max_var`` when a bound is
    needed (MVAE-Q's quotient must stay proper)."""

    def __init__(self, in_features: int, latent: int, max_var: float | None = None, min_var: float = MIN_VAR):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * latent)
        self.max_var, self.min_var = max_var, min_var

    def forward(self, h: Tensor) -> Gaussian:
        mean, raw = widen(self.linear(h)).chunk(2, -1)
        if self.max_var:
            var = self.min_var + (self.max_var - self.min_var) * torch.sigmoid(raw)
        else:
            var = F.softplus(raw) + self.min_var
        return Gaussian(mean, var)


def gaussian_mlp(in_features: int, hidden: Sequence[int], latent: int, max_var: float | None = None) -> nn.Sequential:
    """An MLP (SiLU after every hidden layer) ending in the Gaussian head: ``[*, in]`` -> a
    Gaussian over ``[*, latent]``."""
    body: list[nn.Module] = [MLP(in_features, hidden[:-1], hidden[-1]), SiLU()] if hidden else []
    return nn.Sequential(*body, ExpertHead(hidden[-1] if hidden else in_features, latent, max_var))


class Encoder(nn.Module):
    """Default encoder of a modality: its values -> a Gaussian expert over the latent. The
    ``activation`` of MLP and conv nets may be another than SiLU (ReLU, say, to match other code).
    With ``with_mask`` (MLP modalities) it reads the values with unobserved entries zeroed and
    the entry mask beside them, so that an entry's absence is told apart from a zero."""

    def __init__(
        self,
        modality: Modality,
        latent: int,
        hidden: Sequence[int] = (256, 256),
        channels: Sequence[int] = (32, 64),
        max_var: float | None = None,
        activation: type[nn.Module] = SiLU,
        with_mask: bool = False,
    ):
        super().__init__()
        if with_mask and modality.net != "mlp":
            raise ValueError(f"Encoder: with_mask needs an MLP modality, {modality.name!r} is {modality.net!r}")
        self.modality, self.with_mask = modality, with_mask
        width = hidden[-1] if hidden else latent
        if modality.net == "conv":
            self.body: nn.Module = nn.Sequential(ConvEncoder(modality.shape, channels, width, activation), activation())
        else:
            n_in = input_width(modality) + (modality.size if with_mask else 0)
            self.body = nn.Sequential(MLP(n_in, hidden[:-1], width, activation), activation()) if hidden else nn.Identity()
            width = width if hidden else n_in
        self.head = ExpertHead(width, latent, max_var)

    def forward(self, x: Tensor, observed: Tensor | None = None) -> Gaussian:
        """``x`` ``[*lead, *features]``; ``observed`` (same shape) is required ``with_mask``."""
        event = len(self.modality.shape)
        lead = x.shape[: x.dim() - event]
        if self.with_mask:
            if observed is None:
                raise ValueError(f"Encoder of {self.modality.name!r}: with_mask needs the observed mask")
            x = torch.cat([flat_input(self.modality, x, observed), observed.reshape(*lead, -1).to(x.dtype)], -1)
        elif self.modality.categorical:
            x = F.one_hot(x.long(), self.modality.num_classes).float()
        h = self.body(x.reshape(lead.numel(), -1) if self.modality.net == "mlp" else x.reshape(-1, *self.modality.shape))
        expert = self.head(h)
        return Gaussian(expert.mean.reshape(*lead, -1), expert.var.reshape(*lead, -1))


class Decoder(nn.Module):
    """Default decoder of a modality: latent -> likelihood parameters ``[*lead, *features, P]``
    (``activation`` as the encoder's)."""

    def __init__(
        self,
        modality: Modality,
        latent: int,
        hidden: Sequence[int] = (256, 256),
        channels: Sequence[int] = (32, 64),
        activation: type[nn.Module] = SiLU,
    ):
        super().__init__()
        self.modality = modality
        self.n_params = modality.likelihood.n_params
        if modality.net == "conv":
            self.body: nn.Module = ConvDecoder(latent, channels, modality.shape, self.n_params, activation)
        else:
            self.body = MLP(latent, hidden, modality.size * self.n_params, activation)

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        return self.body(z.reshape(-1, z.shape[-1])).reshape(*lead, *self.modality.shape, self.n_params)


def input_width(modality: Modality) -> int:
    """Width of a modality's values flattened for a joint network (one-hot for categorical)."""
    return modality.size * (modality.num_classes if modality.categorical else 1)


def flat_input(modality: Modality, x: Tensor, observed: Tensor, fill: str = "zeros") -> Tensor:
    """A modality's values as a network input ``[*lead, input_width]`` (``lead`` = the axes
    before the features): unobserved entries become zeros (``fill="zeros"``) or
    standard-normal noise (``"noise"``); categorical values are one-hot, all zeros when
    unobserved."""
    lead = x.shape[: x.dim() - len(modality.shape)]
    if modality.categorical:
        x = F.one_hot(x.long(), modality.num_classes).float() * observed.unsqueeze(-1)
    else:
        filler = torch.randn_like(x) if fill == "noise" else torch.zeros_like(x)
        x = torch.where(observed, x, filler)
    return x.reshape(*lead, -1)


def joint_input(batch, fill: str = "zeros", with_mask: bool = False) -> Tensor:
    """All modalities of a batch side by side, ``[B, sum of widths (+ M)]``.

    Unobserved entries are replaced by zeros (``fill="zeros"``) or standard-normal noise
    (``"noise"``); categorical values are one-hot, all zeros when unobserved. With
    ``with_mask`` the modalities' presence is appended.
    """
    parts = [flat_input(m, batch.values[m.name], batch.observed[m.name], fill).reshape(len(batch), -1) for m in batch.schema]
    if with_mask:
        parts.append(batch.presence().T.float())
    return torch.cat(parts, -1)


class JointDecoder(nn.Module):
    """One MLP from a vector to the likelihood parameters of every modality of a schema."""

    def __init__(self, schema, in_features: int, hidden: Sequence[int]):
        super().__init__()
        self.schema = schema
        self.sizes = [m.size * m.likelihood.n_params for m in schema]
        self.body = MLP(in_features, hidden, sum(self.sizes))

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        lead = h.shape[:-1]
        chunks = self.body(h.reshape(-1, h.shape[-1])).split(self.sizes, -1)
        return {
            m.name: chunk.reshape(*lead, *m.shape, m.likelihood.n_params) for m, chunk in zip(self.schema, chunks)
        }


class GatedTransition(nn.Module):
    """Gated transition function (Krishnan et al., 2017): z -> Gaussian over the next z.

    mean = (1 - g) * linear(z) + g * nonlinear(z) with gate g = sigmoid(MLP(z)), and
    std = softplus(linear(nonlinear(z))) + min_std, as in the BFVI reference code (Krishnan et
    al. put a ReLU before that linear map, which leaves the std of a state whose units are off
    to the bias alone). With ``identity`` the linear path starts as the identity, as Krishnan
    et al. initialise it, so that an untrained chain carries its state forward.
    """

    def __init__(self, latent: int, hidden: int, min_std: float = 1e-3, identity: bool = False):
        super().__init__()
        self.min_std = min_std
        self.gate = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.nonlinear = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.linear = nn.Linear(latent, latent)
        self.scale = nn.Linear(latent, latent)
        if identity:
            with torch.no_grad():
                self.linear.weight.copy_(torch.eye(latent))
                self.linear.bias.zero_()

    def forward(self, z: Tensor) -> Gaussian:
        gate = torch.sigmoid(self.gate(z))
        nonlinear = self.nonlinear(z)
        mean = torch.lerp(self.linear(z), nonlinear, gate)  # (1 - g) linear + g nonlinear in one op
        std = F.softplus(self.scale(nonlinear)) + self.min_std
        return Gaussian(mean, std**2)


CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
POOLS = ("last", "mean")


class SequenceEncoder(nn.Module):
    """A recurrent encoder of a whole sequential modality: values ``[*lead, T, *features]``
    with their mask -> features ``[*lead, out_features]``.

    Each step reads the step's values (unobserved entries zeroed) beside its mask, so a
    missing entry is told apart from an observed zero; the code is a linear map of the last
    hidden state (``pool="last"``) or of the mean of the hidden states over the steps that
    have an observed entry (``"mean"``: steps after the last observed one change nothing, and
    on short data sets the average is far easier to train than a state carried over 100
    steps). ``cell`` is ``"gru"`` or ``"lstm"``.
    """

    def __init__(self, modality: Modality, out_features: int, hidden: int = 64, cell: str = "gru", pool: str = "last"):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.modality, self.pool = modality, pool
        width = input_width(modality)
        self.rnn = CELLS[cell](2 * width, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out_features)

    def forward(self, x: Tensor, observed: Tensor) -> Tensor:
        event = len(self.modality.shape)
        lead, steps = x.shape[: x.dim() - event - 1], x.shape[x.dim() - event - 1]
        values = flat_input(self.modality, x, observed).reshape(lead.numel(), steps, -1)
        if self.modality.categorical:
            mask = observed.unsqueeze(-1).expand(*observed.shape, self.modality.num_classes)
        else:
            mask = observed
        mask = mask.reshape(lead.numel(), steps, -1).float()
        out, _ = self.rnn(torch.cat([values, mask], -1))
        if self.pool == "last":
            return self.head(out[:, -1]).reshape(*lead, -1)
        seen = mask.amax(-1, keepdim=True)  # [N, T, 1]: the step has an observed entry
        pooled = (out * seen).sum(1) / seen.sum(1).clamp(min=1)
        return self.head(pooled).reshape(*lead, -1)


class SequenceDecoder(nn.Module):
    """A recurrent decoder unrolled over ``steps`` from a code: ``[*lead, in_features]`` ->
    likelihood parameters ``[*lead, steps, *features, P]``; every step reads the code."""

    def __init__(self, modality: Modality, in_features: int, hidden: int = 64, cell: str = "gru"):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.modality = modality
        self.n_params = modality.likelihood.n_params
        self.rnn = CELLS[cell](in_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, modality.size * self.n_params)

    def forward(self, z: Tensor, steps: int) -> Tensor:
        lead = z.shape[:-1]
        code = z.reshape(-1, 1, z.shape[-1]).expand(-1, steps, -1)
        out, _ = self.rnn(code)
        return self.head(out).reshape(*lead, steps, *self.modality.shape, self.n_params)


class FeatureEncoder(nn.Module):
    """A deterministic encoder of one modality to features: values ``[B, ...]`` and their mask
    -> ``[B, out_features]`` (SiLU-activated). The modality's default body: conv for ``net="conv"``
    images, a :class:`SequenceEncoder` (pooled as ``pool`` says) for sequential modalities,
    else an MLP over the zero-filled values (one-hot for categorical)."""

    def __init__(
        self,
        modality: Modality,
        out_features: int,
        hidden: Sequence[int] = (256,),
        channels: Sequence[int] = (32, 64),
        rnn_hidden: int = 64,
        cell: str = "gru",
        pool: str = "mean",
    ):
        super().__init__()
        self.modality = modality
        if modality.sequential:
            self.body: nn.Module = SequenceEncoder(modality, out_features, rnn_hidden, cell, pool)
        elif modality.net == "conv":
            self.body = ConvEncoder(modality.shape, channels, out_features)
        else:
            self.body = MLP(input_width(modality), hidden, out_features)

    def forward(self, x: Tensor, observed: Tensor) -> Tensor:
        if self.modality.sequential:
            return silu(self.body(x, observed))
        if self.modality.net == "conv":
            return silu(self.body(torch.where(observed, x, torch.zeros_like(x))))
        return silu(self.body(flat_input(self.modality, x, observed)))


class FactorDecoder(nn.Module):
    """The default decoder of a modality from a code ``[*lead, in_features]`` to likelihood
    parameters: a :class:`SequenceDecoder` unrolled over ``steps`` for a sequential modality,
    else the modality's :class:`Decoder`."""

    def __init__(
        self,
        modality: Modality,
        in_features: int,
        hidden: Sequence[int] = (256,),
        channels: Sequence[int] = (32, 64),
        rnn_hidden: int = 64,
        cell: str = "gru",
    ):
        super().__init__()
        self.modality = modality
        if modality.sequential:
            self.body: nn.Module = SequenceDecoder(modality, in_features, rnn_hidden, cell)
        else:
            self.body = Decoder(modality, in_features, hidden, channels)

    def forward(self, z: Tensor, steps: int | None = None) -> Tensor:
        if self.modality.sequential:
            if steps is None:
                raise ValueError(f"modality {self.modality.name!r} is sequential: decoding it needs the number of steps")
            return self.body(z, steps)
        return self.body(z)
