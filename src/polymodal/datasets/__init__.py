"""Built-in data, generated or loaded from installed packages; nothing is downloaded."""

from .digit_styles import digit_styles_schema, load_digit_styles, print_features, render_prints
from .digits import load_digits
from .spirals import generate_spirals, load_spirals

__all__ = [
    "digit_styles_schema", "generate_spirals", "load_digit_styles", "load_digits", "load_spirals", "print_features",
    "render_prints",
]
