"""Built-in data, generated or loaded from installed packages; nothing is downloaded."""

from .digits import load_digits

__all__ = ["load_digits"]
