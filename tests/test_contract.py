"""The model contract, checked for every model in ``MODELS`` (in the manner of scikit-learn's
common estimator checks). A new model needs one line in ``FACTORIES``: the data it models and
a small instance of it."""

import json
from functools import cache

import numpy as np
import pytest
import torch
from test_models import table  # three static modalities (a vector, another, a label), partly observed

import polymodal as pm
from polymodal.models.base import QUERIES


@cache
def pair(n=12):
    """Two static modalities (MEME's s and t): pairs, and samples with one of them."""
    t = table()
    return pm.Batch(pm.Schema([t.schema["a"], t.schema["c"]]), {k: t.values[k] for k in "ac"},
                    {k: t.observed[k] for k in "ac"})


@cache
def sequences(n=6, steps=5, seed=0):
    """Two sequential modalities with steps dropped, a vector and a scalar."""
    g = torch.Generator().manual_seed(seed)
    schema = pm.Schema([pm.Modality("x", (2,), sequential=True), pm.Modality("y", (), sequential=True)])
    data = {"x": torch.randn(n, steps, 2, generator=g), "y": torch.randn(n, steps, generator=g)}
    data["x"][torch.rand(n, steps, generator=g) < 0.3] = float("nan")
    data["y"][torch.rand(n, steps, generator=g) < 0.3] = float("nan")
    return pm.Batch.from_data(schema, data)


FACTORIES = {  # name (the model's, then any setting): (its data, a small instance for a schema)
    "dks": (sequences, lambda s: pm.DKS(s, latent_dim=2, hidden=(8,), transition_hidden=8, rnn_hidden=4)),
    "mdmm": (sequences, lambda s: pm.MDMM(s, latent_dim=2, hidden=(8,), transition_hidden=8, particles=3)),
    "jmvae": (table, lambda s: pm.JMVAE(s, latent_dim=2, hidden=(8,), joint_hidden=(8,))),
    "meme": (pair, lambda s: pm.MEME(s, latent_dim=2, hidden=(8,), samples=2, pseudo_samples=3)),
    "meme (3 modalities)": (table, lambda s: pm.MEME(s, latent_dim=2, hidden=(8,), samples=2, pseudo_samples=3)),
    "mfm": (table, lambda s: pm.MFM(s, label="c", shared_dim=2, modality_dim=2, factor_dim=4, hidden=(8,))),
    "miwae": (table, lambda s: pm.MIWAE(s, latent_dim=2, hidden=(8,), samples=3, impute_samples=3)),
    "mmvae": (table, lambda s: pm.MMVAE(s, latent_dim=2, hidden=(8,), samples=2)),
    "mmvaeplus": (table, lambda s: pm.MMVAEPlus(s, latent_dim=2, private_dim=2, hidden=(8,), samples=2)),
    "mopoe": (table, lambda s: pm.MoPoE(s, latent_dim=2, hidden=(8,))),
    "mvae": (table, lambda s: pm.MVAE(s, latent_dim=2, hidden=(8,))),
    "mvtcae": (table, lambda s: pm.MVTCAE(s, latent_dim=2, hidden=(8,))),
    "vsae": (table, lambda s: pm.VSAE(s, latent_dim=2, hidden=(8,), joint_hidden=(8,))),
    "zerofill-vae": (table, lambda s: pm.ZeroFillVAE(s, latent_dim=2, hidden=(8,))),
}

# One call of each query a model may declare, on a batch of its data.
CALLS = {
    "embed": lambda m, b: m.embed(b),
    "reconstruct": lambda m, b: m.reconstruct(b),
    "impute": lambda m, b: m.impute(b),
    "predict": lambda m, b: m.predict(b, b.schema.names[-1]),
    "generate": lambda m, b: m.generate(2, **({"steps": 3} if m.data == "sequences" else {})),
    "log_likelihood": lambda m, b: m.log_likelihood(b, n_samples=2),
    "draw_imputations": lambda m, b: m.draw_imputations(b, 2, samples=2),
    "extrapolate": lambda m, b: m.extrapolate(b, forward=1),
    "filter": lambda m, b: m.filter(b),
    "smooth": lambda m, b: m.smooth(b),
    "sample_latents": lambda m, b: m.sample_latents(b, 2),
    "bound": lambda m, b: m.bound(b.select(torch.stack([b.present(n) for n in b.schema.names]).all(0)), b.schema.names[0]),
}


def build(name, seed=0):
    data, factory = FACTORIES[name]
    batch = data()
    torch.manual_seed(seed)
    return factory(batch.schema), batch


def outputs(model, batch):
    """What a model answers about ``batch`` from one random state: posterior means and imputations."""
    torch.manual_seed(0)
    embedded = model.embed(batch)
    torch.manual_seed(0)
    return {"embed": embedded, **model.impute(batch, samples=0).values}


def test_every_model_has_a_factory():
    ours = [name for name, cls in pm.MODELS.items() if cls.__module__.startswith("polymodal.")]  # not the tests' own
    assert sorted({name.split(" ")[0] for name in FACTORIES}) == sorted(ours)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_declared_capabilities(name):
    cls = pm.MODELS[name.split(" ")[0]]
    assert cls.data in ("static", "sequences", "any")
    assert QUERIES - {"log_likelihood", "draw_imputations"} <= cls.queries and set(cls.queries) <= set(CALLS)
    assert ("log_likelihood" in cls.queries) is cls.has_density
    wrong = pm.Schema([pm.Modality(n, (2,), sequential=cls.data == "static") for n in "vw"])
    if cls.data != "any":
        with pytest.raises(ValueError, match="are (not )?sequential"):
            cls(wrong)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_loss_is_finite_with_finite_gradients(name):
    model, batch = build(name)
    out = model.loss(batch, beta=0.5)
    assert torch.isfinite(out.loss) and all(torch.isfinite(v) for v in out.terms.values())
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_impute_keeps_observed_entries(name):
    model, batch = build(name)
    for samples in (0, 3) if model.has_density else (0,):
        filled = model.impute(batch, samples=samples)
        for m in batch.schema.names:
            assert filled.observed[m].all() and torch.isfinite(filled.values[m].float()).all()
            assert torch.equal(filled.values[m][batch.observed[m]], batch.values[m][batch.observed[m]])


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_mixed_availability_in_one_batch_equals_each_sample_alone(name):
    """Each sample of a batch of mixed availability is answered as in a batch of its own copies
    (the same random draws, so that models with sampled posteriors compare exactly too)."""
    model, batch = build(name)
    together = outputs(model, batch)
    for i in range(len(batch)):
        alone = outputs(model, batch.select([i] * len(batch)))
        for key, value in alone.items():
            torch.testing.assert_close(value[i], together[key][i], msg=f"{key} of sample {i}")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_rows_with_nothing_observed(name):
    model, batch = build(name)
    keep = torch.arange(len(batch)) % 2 == 0
    empty = batch.with_observed({m: o & keep.view(-1, *[1] * (o.dim() - 1)) for m, o in batch.observed.items()})
    assert torch.isfinite(model.loss(empty).loss)
    assert torch.isfinite(model.embed(empty)).all()
    for m, x in model.impute(empty).values.items():
        assert torch.isfinite(x.float()).all(), m


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_save_and_load_give_identical_outputs(name, tmp_path):
    model, batch = build(name)
    model.observe(batch)
    model.save(tmp_path / name)
    loaded = pm.load(tmp_path / name)
    assert type(loaded) is type(model) and loaded.seen == model.seen
    for key, value in outputs(model, batch).items():
        torch.testing.assert_close(outputs(loaded, batch)[key], value, msg=key)
    draws = []
    for m in (model, loaded):
        torch.manual_seed(1)
        draws.append(CALLS["generate"](m, batch).values)
    for key, value in draws[0].items():
        torch.testing.assert_close(draws[1][key], value, msg=key)
    config = tmp_path / name / "config.json"  # a folder of an older version, which did not record what was seen
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "seen"}))
    older = pm.load(tmp_path / name)
    assert older.seen is None
    torch.testing.assert_close(outputs(older, batch)["embed"], outputs(model, batch)["embed"])


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_queries_give_the_model_back_in_its_mode(name):
    model, batch = build(name)
    for training in (True, False):
        model.train(training)
        for query in sorted(model.queries):
            CALLS[query](model, batch)
            assert model.training is training and all(m.training is training for m in model.modules()), query


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_undeclared_density_queries_are_refused(name):
    model, batch = build(name)
    if model.has_density:
        assert torch.isfinite(model.log_likelihood(batch, n_samples=2)).all()
        return
    with pytest.raises(NotImplementedError, match="no density"):
        model.log_likelihood(batch)
    with pytest.raises(ValueError, match="samples must be 0"):
        model.impute(batch, samples=2)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_modality_never_observed_warns_in_fit_and_predict_refuses_it(name):
    model, batch = build(name)
    target = batch.schema.names[-1]
    with pytest.warns(pm.NeverObservedWarning, match=repr(target)):
        pm.Trainer(model, epochs=1, batch_size=len(batch), progress=False).fit(batch.without(target))
    with pytest.raises(ValueError, match=f"cannot predict {target!r}"):
        model.predict(batch, target)
    model.predict(batch, batch.schema.names[0])  # the modalities it observed are answered


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_short_training_run_lowers_the_loss(name):
    """The smoke run of each model; its learning on real data is in the slow tests."""
    model, batch = build(name)
    trainer = pm.Trainer(model, epochs=15, batch_size=len(batch), lr=1e-2, progress=False, seed=0)
    before = trainer.evaluate(batch)["loss"]
    history = trainer.fit(batch)
    assert all(np.isfinite(row["loss"]) for row in history)
    assert trainer.evaluate(batch)["loss"] < before
