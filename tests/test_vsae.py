import numpy as np
import pandas as pd
import pytest
import torch

import polymodal as pm
from polymodal.metrics import nrmse


def correlated_table(n=300, seed=0, rate=0.4):
    """Five columns that are one hidden number plus small noise, a categorical column of its sign."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 1, generator=g)
    x = (u + 0.05 * torch.randn(n, 5, generator=g)).numpy()
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
    table["big"] = pd.Series(np.where(u[:, 0].numpy() > 0.5, "yes", "no"), dtype="category")
    observed = pm.missing.mcar(table.shape, rate, g).numpy()
    return table, table.mask(~observed), observed


def fitted_tables():
    table, holes, observed = correlated_table()
    tables = pm.TableSchema().fit(holes)
    return tables, tables.transform(holes), tables.transform(table), observed


def test_selective_proposal_uses_each_modality_encoder_exactly_when_observed():
    tables, batch, _, _ = fitted_tables()
    batch = batch.select(slice(0, 16))
    model = pm.VSAE(tables.schema_, latent_dim=3, fill="zeros")
    q = model.encode(batch)
    d = 3
    joint_mean = model.joint_encoder(pm.nets.joint_input(batch, "zeros", with_mask=True)).mean
    for i, name in enumerate(tables.schema_.names):
        own = model.encoders[name](batch.values[name])
        present = batch.present(name)
        block = q.mean[:, i * d : (i + 1) * d]
        torch.testing.assert_close(block[present], own.mean[present])
        torch.testing.assert_close(block[~present], joint_mean[~present, i * d : (i + 1) * d])
        assert present.any() and (~present).any()


def test_unobserved_term_is_switched_on_after_the_warmup():
    tables, batch, _, _ = fitted_tables()
    model = pm.VSAE(tables.schema_, latent_dim=3, warmup=2)
    trainer = pm.Trainer(model, progress=False)
    assert trainer.loss_weights(0, 5)["unobserved"] == 0.0 and trainer.loss_weights(9, 5)["unobserved"] == 0.0
    assert trainer.loss_weights(10, 5)["unobserved"] == 1.0
    pseudo = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        out = model.loss(batch, unobserved=weight)
        t = out.terms
        torch.testing.assert_close(out.loss.detach(), -(t["recon"] + weight * t["pseudo"] + t["mask"] - t["kl"]))
        pseudo[weight] = float(t["pseudo"])
    assert pseudo[0.0] == 0.0 and pseudo[1.0] != 0.0  # pseudo-targets are made and scored only once switched on


def test_imputation_never_changes_observed_entries():
    tables, batch, _, _ = fitted_tables()
    for model in (pm.VSAE(tables.schema_, latent_dim=3), pm.MIWAE(tables.schema_, impute_samples=50),
                  pm.ZeroFillVAE(tables.schema_, condition_on_mask=True)):
        for samples in (0, 30):
            filled = model.impute(batch, samples=samples) if not isinstance(model, pm.MIWAE) else model.impute(batch)
            for name in tables.schema_.names:
                kept = batch.observed[name]
                assert torch.equal(filled.values[name][kept], batch.values[name][kept]), (type(model).__name__, name)
                assert filled.observed[name].all()


@pytest.mark.slow
def test_vsae_learns_to_impute_from_the_other_columns():
    tables, batch, truth, observed = fitted_tables()
    torch.manual_seed(0)
    model = pm.VSAE(tables.schema_, latent_dim=2, hide=0.5, warmup=20)
    pm.Trainer(model, epochs=120, batch_size=64, seed=0, progress=False).fit(batch)
    numeric = [f"x{i}" for i in range(5)]
    filled = model.impute(batch, samples=200).numpy()
    imputed = np.stack([filled[c] for c in numeric], 1)
    true = np.stack([truth.numpy()[c] for c in numeric], 1)
    means = np.nanmean(np.stack([batch.numpy()[c] for c in numeric], 1), 0)
    baseline = nrmse(np.broadcast_to(means, true.shape), true, ~observed[:, :5])
    assert nrmse(imputed, true, ~observed[:, :5]) < 0.6 * baseline
    big = filled["big"][~observed[:, 5]]
    assert np.mean(big == truth.numpy()["big"][~observed[:, 5]]) > 0.8


@pytest.mark.slow
def test_generated_masks_follow_the_training_missing_rate():
    table, holes, _ = correlated_table(rate=0.6)
    tables = pm.TableSchema().fit(holes)
    torch.manual_seed(0)
    model = pm.VSAE(tables.schema_, latent_dim=2)
    pm.Trainer(model, epochs=60, batch_size=64, progress=False).fit(tables.transform(holes))
    generated = model.generate(2000)
    assert abs((1 - generated.presence().float().mean().item()) - 0.6) < 0.05
    assert generated.values["big"].dtype == torch.long


def test_a_row_with_nothing_observed_is_imputed():
    tables, batch, _, _ = fitted_tables()
    empty = batch.select(slice(0, 4)).without(*tables.schema_.names)
    filled = pm.VSAE(tables.schema_, latent_dim=2).impute(empty)
    assert all(torch.isfinite(v.float()).all() for v in filled.values.values())


def test_save_load_round_trip(tmp_path):
    tables, batch, _, _ = fitted_tables()
    model = pm.VSAE(tables.schema_, latent_dim=2, decoder_mask="none")
    model.save(tmp_path)
    loaded = pm.load(tmp_path)
    torch.manual_seed(1)
    a = model.impute(batch, samples=20)
    torch.manual_seed(1)
    b = loaded.impute(batch, samples=20)
    for name in tables.schema_.names:
        assert torch.equal(a.values[name], b.values[name])


def test_bad_options_raise():
    tables, _, _, _ = fitted_tables()
    with pytest.raises(ValueError, match="decoder_mask"):
        pm.VSAE(tables.schema_, decoder_mask="true")
    with pytest.raises(pm.ConfigError, match="latent"):
        pm.VSAE(tables.schema_, latent=3)


def test_mask_term_is_the_bernoulli_log_likelihood_of_the_modality_mask():
    tables, batch, _, _ = fitted_tables()
    batch = batch.select(slice(0, 12))
    model = pm.VSAE(tables.schema_, latent_dim=3)
    z = torch.randn(5, 12, model.latent_size)
    logits, present = model.mask_logits(z), batch.presence().T.float()
    by_hand = (present * torch.nn.functional.logsigmoid(logits) + (1 - present) * torch.nn.functional.logsigmoid(-logits)).sum(-1)
    with torch.no_grad():
        torch.testing.assert_close(model.log_mask(batch, z), by_hand)
        decoded = model.decode(z)
        torch.testing.assert_close(model.log_joint(batch, z, decoded),
                                   model.log_prior(z) + model.reconstruction(batch, decoded, model.unit_weights) + by_hand)
