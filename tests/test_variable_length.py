"""Sequences of several lengths in one batch: padding is unobserved steps after a sequence's
end, and it never changes what the sequence models say about the shorter sequences."""

import pytest
import torch

import polymodal as pm

LENGTHS = (20, 35, 50)
SMALL = {"latent_dim": 3, "hidden": (8,), "transition_hidden": 8}
MODELS = {
    "mdmm": lambda schema: pm.MDMM(schema, **SMALL, particles=5, eval_particles=4000),
    **{f"dks-{d}-{s}": (lambda schema, d=d, s=s: pm.DKS(schema, direction=d, skip=s, rnn_hidden=6, **SMALL))
       for d in ("forward", "backward") for s in (False, True)},
}


def padded(n: int = 12) -> pm.Batch:
    """``n`` spirals of 50 steps, the i-th cut to LENGTHS[i % 3] (the rest padding), with 20%
    of the steps of each modality missing inside."""
    train, _ = pm.load_spirals()
    batch = pm.Batch(train.schema, {k: v[:n, :50] for k, v in train.values.items()},
                     {k: m[:n, :50] for k, m in train.observed.items()})
    batch = pm.missing.drop_steps(batch, 0.2, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([LENGTHS[i % 3] for i in range(n)])
    inside = torch.arange(50) < lengths[:, None]
    masks = {k: m & inside for k, m in batch.observed.items()}
    for m in masks.values():  # every sequence's last step is observed, so its length is what the mask says
        m[torch.arange(n), lengths - 1] = True
    return batch.with_observed(masks)


def alone(batch: pm.Batch, i: int, steps: int) -> pm.Batch:
    """Sequence ``i`` by itself, its first ``steps`` steps."""
    return batch.select([i]).select((slice(None), slice(0, steps)))


@pytest.fixture(scope="module")
def trained():
    batch = padded()
    models = {}
    for name, build in MODELS.items():
        torch.manual_seed(0)
        model = build(batch.schema)
        history = pm.Trainer(model, epochs=6, batch_size=6, lr=1e-2, progress=False).fit(batch)
        assert all(torch.isfinite(torch.tensor(row["loss"])) for row in history)
        models[name] = model
    return batch, models


@pytest.mark.parametrize("name", list(MODELS))
def test_padding_changes_no_inference_call_on_the_shorter_sequences(trained, name):
    batch, models = trained
    batch = batch.select(slice(0, 3))  # one sequence of each length
    model = models[name]
    # MDMM's backward pass draws particles: 4000 of them leave a Monte Carlo error far below
    # what running the backward chain through the padding changed (about 0.1 here)
    tol = {"rtol": 0, "atol": 2e-2} if name == "mdmm" else {"rtol": 1e-5, "atol": 1e-5}
    torch.manual_seed(0)
    whole = {"embed": model.embed(batch), "impute": model.impute(batch),
             "extrapolate": model.extrapolate(batch, forward=3),
             "direction": model.predict(batch, "direction", ["x", "y"], proba=True)}
    if name == "mdmm":
        whole["filter"], whole["smooth"] = model.filter(batch), model.smooth(batch)
    for i, length in enumerate(LENGTHS[:2]):
        one = alone(batch, i, length)
        torch.manual_seed(0)
        torch.testing.assert_close(model.embed(one)[0], whole["embed"][i, :length], **tol)
        filled = model.impute(one)
        long = model.extrapolate(one, forward=50 + 3 - length)  # the padding is extrapolated too
        for m in ("x", "y"):
            torch.testing.assert_close(filled.values[m][0], whole["impute"].values[m][i, :length], **tol)
            torch.testing.assert_close(long.values[m][0], whole["extrapolate"].values[m][i], **tol)
        torch.testing.assert_close(model.predict(one, "direction", ["x", "y"], proba=True)[0],
                                   whole["direction"][i, :length], **tol)
        if name == "mdmm":
            for query in ("filter", "smooth"):
                got = getattr(model, query)(one)
                torch.testing.assert_close(got.mean[0], whole[query].mean[i, :length], **tol)
                torch.testing.assert_close(got.var[0], whole[query].var[i, :length], rtol=5e-2, atol=1e-4)


@pytest.mark.parametrize("name", list(MODELS))
def test_padded_steps_weigh_exactly_one_in_the_log_likelihood(trained, name):
    """The importance weights of log_likelihood are per whole path: at a padded step the
    proposal is the conditional prior itself and nothing is observed, so the step's factor
    p(z_t | z_{t-1}) / q(z_t | ...) is exactly one; with the steps before unchanged (above),
    the estimate is the one the sequence gets alone, up to Monte Carlo error."""
    batch, models = trained
    model = models[name]
    batch = batch.select(slice(0, 3))
    lengths = torch.tensor(LENGTHS)
    after = torch.arange(50) >= lengths[:, None]
    torch.manual_seed(0)
    with torch.no_grad():
        if name == "mdmm":
            evidence = model._evidence(batch)
            futures = model.backward_filter(evidence, 50)[1]
            posts, priors, path = model.forward_smooth(evidence, futures)
            posts, priors, path = posts[0], priors[0], path[0]
        else:
            posts, priors, path = model.posterior(batch)
        step = posts.log_prob(path) - priors.log_prob(path)  # [B, T]
    torch.testing.assert_close(step[after], torch.zeros(int(after.sum())), rtol=0, atol=1e-5)
    assert step[~after].abs().sum() > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_padding_adds_nothing_to_the_loss(trained, name):
    """Padding the batch further changes no loss term: the padded steps have no reconstruction
    and a zero KL, and the loss is averaged over the valid steps, not B * T."""
    batch, models = trained
    model = models[name]
    longer = model.extrapolate(batch, forward=10).with_observed(
        {k: torch.cat([m, torch.zeros_like(m[:, :10])], 1) for k, m in batch.observed.items()})
    assert model.sequence_steps(batch) == model.sequence_steps(longer) == sum(LENGTHS) * 4
    assert model.rescaled(batch) == model.rescaled(longer)
    model.eval()  # no burst: the loss is then a deterministic function of its noise
    try:
        if name == "mdmm":  # the backward pass draws at the padded steps first, so compare in expectation
            torch.manual_seed(0)
            with torch.no_grad():
                a = torch.stack([model.loss(batch).loss for _ in range(20)])
                b = torch.stack([model.loss(longer).loss for _ in range(20)])
            assert (a.mean() - b.mean()).abs() < 3 * (a.var() / 20 + b.var() / 20).sqrt()
        else:  # the forward path draws at the padded steps last
            torch.manual_seed(0)
            a = model.loss(batch).loss
            torch.manual_seed(0)
            b = model.loss(longer).loss
            torch.testing.assert_close(a, b)
    finally:
        model.train()


def test_the_training_burst_falls_inside_each_sequence():
    batch = padded(300)
    lengths = torch.tensor([LENGTHS[i % 3] for i in range(300)])
    out = pm.missing.drop_burst(batch, 0.2, ["x"], torch.Generator().manual_seed(0), lengths=lengths)
    gone = batch.present("x") & ~out.present("x")
    for row, length in zip(gone, lengths):
        steps = row.nonzero().squeeze(1)
        assert (steps < length).all() and (steps.numel() == 0 or steps.max() - steps.min() < int(0.2 * length))
    ends = torch.stack([row.nonzero().max() for row in gone[lengths == 50] if row.any()])
    assert ends.max() >= 45  # bursts of the full-length sequences reach their end
