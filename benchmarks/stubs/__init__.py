"""Stand-ins for packages that a compared library imports but these benchmarks never use.

MultiVae imports ``torchvision`` at module level (image grids, data sets, transforms, FID
networks), and no CPU build of torchvision installs beside torch 2.13.0. A benchmark that
compares against MultiVae calls :func:`use_torchvision_stand_in` before importing it;
importing this package alone changes nothing.
"""

import importlib.util
import sys
from pathlib import Path

TORCHVISION = Path(__file__).resolve().parent / "torchvision"


def use_torchvision_stand_in() -> None:
    """Make ``import torchvision`` load ``benchmarks/stubs/torchvision`` when no torchvision is
    installed (an installed one is left as it is)."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    spec = importlib.util.spec_from_file_location("torchvision", TORCHVISION / "__init__.py",
                                                  submodule_search_locations=[str(TORCHVISION)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["torchvision"] = module
    spec.loader.exec_module(module)
