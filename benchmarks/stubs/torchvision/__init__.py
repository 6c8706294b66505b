"""A stand-in for torchvision, for MultiVae's imports in the benchmark environment only.

No CPU build of torchvision installs beside torch 2.13.0 here, and MultiVae imports it at
module level for image grids, data sets, transforms and FID networks that these benchmarks
never use. ``utils.make_grid`` is real; every other ``torchvision.*`` module is made on
import, and each of its names raises when used."""

import importlib.abc
import importlib.machinery
import sys
import types

from ._unavailable import Unavailable


class _Module(types.ModuleType):
    __path__: list[str] = []  # a package, so that deeper imports reach the finder

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return Unavailable


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("torchvision.") and name != "torchvision.utils":
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Module(spec.name)

    def exec_module(self, module):
        pass


sys.meta_path.append(_Finder())
