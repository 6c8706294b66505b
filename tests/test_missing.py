import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polymodal import missing
from polymodal.data import Batch
from polymodal.modalities import Modality, Schema

SCHEMA = Schema([Modality("a", (2,)), Modality("b", (3,)), Modality("c", likelihood="categorical", num_classes=3)])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def complete_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return Batch.from_data(SCHEMA, {"a": rng.normal(size=(n, 2)), "b": rng.normal(size=(n, 3)), "c": rng.integers(0, 3, n)})


def random_batch(n, seed):
    """Feature-level NaNs and whole modalities missing, some samples entirely empty."""
    rng = np.random.default_rng(seed)
    data = {"a": rng.normal(size=(n, 2)), "b": rng.normal(size=(n, 3)), "c": rng.integers(0, 3, n).astype(float)}
    for x in data.values():
        x[rng.random(x.shape) < 0.3] = np.nan
        x[rng.random(n) < 0.3] = np.nan
    return Batch.from_data(SCHEMA, data)


def presence(batch):
    return torch.stack([batch.observed[name].reshape(len(batch), -1).any(1) for name in SCHEMA.names])  # [M, B]


def test_mcar_rate():
    mask = missing.mcar((400, 50), 0.3, gen())
    assert mask.dtype == torch.bool and mask.shape == (400, 50)
    assert abs((~mask).float().mean() - 0.3) < 0.01
    assert missing.mcar((10, 10), 0.0, gen()).all()
    assert torch.equal(missing.mcar((5, 5), 0.5, gen(3)), missing.mcar((5, 5), 0.5, gen(3)))
    for rate in [-0.1, 1.0]:
        with pytest.raises(ValueError, match="rate"):
            missing.mcar((2, 2), rate)


def test_mar_depends_on_always_observed_columns():
    n, m = 20000, 7  # k = ceil(7 / 4) = 2
    x = torch.rand(n, m, generator=gen(1)) * 16 - 8
    mask = missing.mar(x, gen(2))
    k = math.ceil(m / 4)
    assert mask[:, :k].all()
    p_missing = torch.sigmoid(x[:, :k].sum(1) / m)
    missing_rate = (~mask[:, k:]).float().mean(1)
    assert abs(missing_rate.mean() - p_missing.mean()) < 0.01
    order = x[:, :k].sum(1).argsort()
    low, high = missing_rate[order[: n // 4]].mean(), missing_rate[order[-(n // 4) :]].mean()
    assert high - low > 0.3
    # the other columns' values play no part
    shuffled = x.clone()
    shuffled[:, k:] = -shuffled[:, k:]
    assert torch.equal(missing.mar(shuffled, gen(2)), mask)


def test_mnar_higher_values_miss_more():
    x = torch.randn(200, 100, generator=gen(1)) * 3
    mask = missing.mnar(x.numpy(), gen(2))
    assert abs((~mask).float().mean() - torch.sigmoid(x).mean()) < 0.01
    high, low = (~mask[x > 2]).float().mean(), (~mask[x < -2]).float().mean()
    assert high > 0.85 and low < 0.15
    nan_table = np.full((100, 100), np.nan)
    assert abs((~missing.mnar(nan_table, gen())).float().mean() - 0.5) < 0.02
    with pytest.raises(ValueError, match=r"\(N, M\)"):
        missing.mnar(np.zeros(3))


def test_drop_modalities_statistics():
    batch = complete_batch(6000)
    rate = 0.4
    out = missing.drop_modalities(batch, rate, gen())
    kept = presence(out)
    assert kept.any(0).all()
    # each modality survives with 1 - rate, plus the rescue of a uniformly chosen one when all three were dropped
    expected = (1 - rate) + rate**3 / 3
    assert torch.allclose(kept.float().mean(1), torch.tensor(expected), atol=0.02)
    assert abs((kept.sum(0) == 1).float().mean() - 3 * rate**2 * (1 - rate) - rate**3) < 0.02
    for name in SCHEMA.names:  # whole modalities are dropped, values of kept ones unchanged
        obs = out.observed[name].reshape(len(out), -1)
        assert (obs.all(1) | ~obs.any(1)).all()
        assert torch.equal(out.values[name][obs.any(1)], batch.values[name][obs.any(1)])
    assert (out.values["b"][~kept[1]] == 0).all()


def test_drop_modalities_rate_zero_changes_nothing():
    batch = random_batch(50, 0)
    out = missing.drop_modalities(batch, 0.0, gen())
    for name in SCHEMA.names:
        assert torch.equal(out.observed[name], batch.observed[name])


def test_drop_modalities_on_sequences():
    schema = Schema([Modality("s", (2,), sequential=True), Modality("t", (), sequential=True)])
    batch = Batch.from_data(schema, {"s": np.ones((500, 4, 2)), "t": np.ones((500, 4))})
    out = missing.drop_modalities(batch, 0.5, gen())
    present = torch.stack([out.observed[n].flatten(1).any(1) for n in schema.names])
    assert present.any(0).all() and present.float().mean() < 0.85


@pytest.mark.parametrize("n, fraction", [(101, 0.3), (60, 0.0), (10, 1.0), (7, 0.5)])
def test_paired_split(n, fraction):
    batch = complete_batch(n)
    out = missing.paired_split(batch, fraction, gen())
    count = presence(out).sum(0)
    complete = count == len(SCHEMA)
    assert complete.sum() == round(fraction * n)
    assert ((count == 1) | complete).all()
    pools = presence(out)[:, ~complete].sum(1)
    assert pools.max() - pools.min() <= 1
    for name in SCHEMA.names:
        obs = out.observed[name].reshape(len(out), -1)
        assert torch.equal(out.values[name][obs.any(1)], batch.values[name][obs.any(1)])


def test_paired_split_is_random_but_reproducible():
    batch = complete_batch(40)
    a, b = missing.paired_split(batch, 0.25, gen(1)), missing.paired_split(batch, 0.25, gen(1))
    c = missing.paired_split(batch, 0.25, gen(2))
    assert torch.equal(presence(a), presence(b)) and not torch.equal(presence(a), presence(c))
    with pytest.raises(ValueError, match="fraction"):
        missing.paired_split(batch, 1.5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), seed=st.integers(0, 2**31 - 1), rate=st.floats(0.0, 0.99))
def test_drop_modalities_properties(n, seed, rate):
    batch = random_batch(n, seed)
    out = missing.drop_modalities(batch, rate, gen(seed))
    assert_only_removes_keeping_something(batch, out)
    for name in SCHEMA.names:
        obs, before = out.observed[name].reshape(len(out), -1), batch.observed[name].reshape(len(batch), -1)
        assert ((obs == before).all(1) | ~obs.any(1)).all()  # a modality is kept whole or removed whole


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), seed=st.integers(0, 2**31 - 1), fraction=st.floats(0.0, 1.0))
def test_paired_split_only_removes(n, seed, fraction):
    batch = random_batch(n, seed)
    out = missing.paired_split(batch, fraction, gen(seed))
    assert_only_removes_keeping_something(batch, out)  # an unpaired sample keeps a modality it has


def assert_only_removes_keeping_something(batch, out):
    for name in SCHEMA.names:
        assert not (out.observed[name] & ~batch.observed[name]).any()
    assert torch.equal(presence(out).any(0), presence(batch).any(0))


def test_drop_entries_hides_single_entries_at_a_rate_per_sequence():
    schema = Schema([Modality("a", (4,), sequential=True), Modality("b", (2,), sequential=True)])
    batch = Batch.from_data(schema, {"a": torch.randn(400, 10, 4), "b": torch.randn(400, 10, 2)})
    out = missing.drop_entries(batch, 0.6, ["a"], generator=gen())
    assert out.observed["b"].all()
    hidden = (~out.observed["a"]).float()
    assert abs(hidden.mean() - 0.3) < 0.02  # rates uniform in [0, 0.6]
    rates = hidden.mean((1, 2))
    assert rates.min() < 0.05 and rates.max() > 0.5  # from whole sequences to sparse ones
    partial = out.observed["a"].any(-1) & ~out.observed["a"].all(-1)
    assert partial.float().mean() > 0.3  # most hidden entries leave their step partly observed
    assert torch.equal(missing.drop_entries(out, 0.6, generator=gen(1)).observed["a"] & ~out.observed["a"],
                       torch.zeros_like(out.observed["a"]))  # only ever removes
