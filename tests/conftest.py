import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a CUDA GPU; without one they are skipped, saying so."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
