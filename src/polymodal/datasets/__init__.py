"""Built-in data, generated or loaded from installed packages (nothing is downloaded), and
the readers and writers of data files."""

from .digits import load_digits
from .files import read_files, read_frame, write_frame
from .spirals import generate_spirals, load_spirals

__all__ = ["generate_spirals", "load_digits", "load_spirals", "read_files", "read_frame", "write_frame"]
