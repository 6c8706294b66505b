"""What the data looks like: a :class:`Modality` per source, and the :class:`Schema` of all."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .likelihoods import Categorical, Likelihood, make_likelihood

NETS = ("mlp", "conv")


@dataclass(frozen=True)
class Modality:
    """One source of data.

    ``shape`` is the feature shape of one sample (of one time step when ``sequential``):
    ``()`` for a scalar or a class label, ``(d,)`` for a vector, ``(h, w)`` or ``(c, h, w)``
    for an image. ``likelihood`` is a name (``"gaussian"``, ``"laplace"``, ``"bernoulli"``,
    ``"categorical"``), a config dict, or a likelihood object; ``num_classes`` is required
    for categorical modalities. ``net`` picks the default encoder/decoder (``"mlp"``, or
    ``"conv"`` for images).
    """

    name: str
    shape: tuple[int, ...] = ()
    likelihood: Likelihood | str | dict = "gaussian"
    num_classes: int | None = None
    sequential: bool = False
    net: str = "mlp"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a modality needs a non-empty name, got {self.name!r}")
        shape = (self.shape,) if isinstance(self.shape, int) else tuple(int(s) for s in self.shape)
        if any(s <= 0 for s in shape):
            raise ValueError(f"modality {self.name!r}: feature shape must be positive, got {shape}")
        object.__setattr__(self, "shape", shape)
        spec = self.likelihood
        if spec == "categorical" or (isinstance(spec, dict) and spec.get("name") == "categorical" and "num_classes" not in spec):
            if self.num_classes is None:
                raise ValueError(f"modality {self.name!r}: a categorical modality needs num_classes")
            spec = Categorical(self.num_classes)
        likelihood = make_likelihood(spec)
        if isinstance(likelihood, Categorical):
            if self.num_classes not in (None, likelihood.num_classes):
                raise ValueError(
                    f"modality {self.name!r}: num_classes={self.num_classes} disagrees with the likelihood's "
                    f"{likelihood.num_classes}"
                )
            object.__setattr__(self, "num_classes", likelihood.num_classes)
        object.__setattr__(self, "likelihood", likelihood)
        if self.net not in NETS:
            raise ValueError(f"modality {self.name!r}: net must be one of {NETS}, got {self.net!r}")
        if self.net == "conv" and len(shape) not in (2, 3):
            raise ValueError(f"modality {self.name!r}: a conv net needs an image shape (h, w) or (c, h, w), got {shape}")

    @property
    def categorical(self) -> bool:
        return isinstance(self.likelihood, Categorical)

    @property
    def size(self) -> int:
        """Number of features in one sample (one time step)."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "likelihood": self.likelihood.config(),
            "num_classes": self.num_classes,
            "sequential": self.sequential,
            "net": self.net,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Modality:
        return cls(**{**config, "shape": tuple(config["shape"])})


class Schema:
    """An ordered set of modalities with unique names."""

    def __init__(self, modalities: Iterable[Modality]):
        self.modalities = tuple(modalities)
        if not self.modalities:
            raise ValueError("a schema needs at least one modality")
        names = [m.name for m in self.modalities]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"modality names must be unique; repeated: {duplicates}")
        self._by_name = {m.name: m for m in self.modalities}

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def __getitem__(self, name: str) -> Modality:
        if name not in self._by_name:
            raise KeyError(f"unknown modality {name!r}; the schema has {self.names}")
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Modality]:
        return iter(self.modalities)

    def __len__(self) -> int:
        return len(self.modalities)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.modalities == other.modalities

    def __repr__(self) -> str:
        return f"Schema({list(self.modalities)!r})"

    def config(self) -> list[dict[str, Any]]:
        return [m.config() for m in self.modalities]

    @classmethod
    def from_config(cls, config: list[dict[str, Any]]) -> Schema:
        return cls(Modality.from_config(c) for c in config)
