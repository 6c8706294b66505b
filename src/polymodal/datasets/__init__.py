"""Built-in data, generated or loaded from installed packages (nothing is downloaded), and
the readers and writers of data files."""

from .basic_motions import ACTIVITIES, basic_motions_schema, load_basic_motions
from .digit_styles import digit_styles_schema, load_digit_styles, print_features, render_prints
from .digits import load_digits
from .files import read_files, read_frame, write_frame
from .japanese_vowels import japanese_vowels_schema, load_japanese_vowels
from .mnist import load_mnist_subset, load_polymnist, mnist_schema, polymnist_schema
from .physionet import load_physionet2012
from .spirals import generate_spirals, load_spirals

__all__ = [
    "ACTIVITIES", "basic_motions_schema", "digit_styles_schema", "generate_spirals", "load_basic_motions", "load_digit_styles",
    "load_digits", "japanese_vowels_schema", "load_japanese_vowels", "load_mnist_subset", "load_physionet2012",
    "load_polymnist", "load_spirals", "mnist_schema", "polymnist_schema", "print_features", "read_files", "read_frame",
    "render_prints", "write_frame",
]
