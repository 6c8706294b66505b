"""Built-in data, generated or loaded from installed packages; nothing is downloaded."""

from .digits import load_digits
from .spirals import generate_spirals, load_spirals

__all__ = ["generate_spirals", "load_digits", "load_spirals"]
