import pytest
import torch
from torch import nn

from polymodal.modalities import Modality
from polymodal.nets import (
    MLP,
    CroppedConvTranspose2d,
    Decoder,
    Encoder,
    ExpertHead,
    FactorDecoder,
    FeatureEncoder,
    GatedTransition,
    SequenceDecoder,
    SequenceEncoder,
    SiLU,
)

LATENT = 4
SMALL = dict(hidden=(16,), channels=(4, 8))


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_mlp_layers_and_shapes():
    mlp = MLP(5, [8, 6], 3)
    assert [type(m) for m in mlp] == [nn.Linear, SiLU, nn.Linear, SiLU, nn.Linear]
    assert [m.out_features for m in mlp if isinstance(m, nn.Linear)] == [8, 6, 3]
    assert mlp(torch.randn(2, 7, 5)).shape == (2, 7, 3)
    assert len(MLP(5, [], 3)) == 1


def inputs(modality, lead):
    if modality.categorical:
        return torch.randint(0, modality.num_classes, (*lead, *modality.shape))
    return torch.rand(*lead, *modality.shape)


MODALITIES = {
    "vector": Modality("v", (5,)),
    "scalar": Modality("s", ()),
    "label": Modality("y", (), likelihood="categorical", num_classes=6),
    "labels": Modality("w", (3,), likelihood="categorical", num_classes=4),
    "image-8x8": Modality("i", (8, 8), likelihood="bernoulli", net="conv"),
    "image-1x7x9": Modality("j", (1, 7, 9), likelihood={"name": "gaussian", "learn_scale": True}, net="conv"),
    "image-3x16x16": Modality("k", (3, 16, 16), likelihood="laplace", net="conv"),
    "image-mlp": Modality("m", (5, 3), likelihood="bernoulli"),
}


@pytest.mark.parametrize("modality", MODALITIES.values(), ids=MODALITIES.keys())
@pytest.mark.parametrize("lead", [(3,), (2, 3)])
def test_encoder_shapes_and_leading_axes(modality, lead):
    encoder = Encoder(modality, LATENT, **SMALL)
    x = inputs(modality, lead)
    expert = encoder(x)
    assert expert.mean.shape == expert.var.shape == (*lead, LATENT)
    assert (expert.var > 0).all()
    # leading axes are only flattened: each sample's expert is the one it gets alone
    flat = x.reshape(-1, *modality.shape)
    alone = encoder(flat[-1:])
    torch.testing.assert_close(expert.mean.reshape(-1, LATENT)[-1:], alone.mean)
    torch.testing.assert_close(expert.var.reshape(-1, LATENT)[-1:], alone.var)


@pytest.mark.parametrize("modality", MODALITIES.values(), ids=MODALITIES.keys())
@pytest.mark.parametrize("lead", [(3,), (2, 3)])
def test_decoder_params_shape(modality, lead):
    decoder = Decoder(modality, LATENT, **SMALL)
    z = torch.randn(*lead, LATENT)
    params = decoder(z)
    n_params = modality.likelihood.n_params
    assert params.shape == (*lead, *modality.shape, n_params)
    torch.testing.assert_close(params.reshape(-1, *modality.shape, n_params)[-1:], decoder(z.reshape(-1, LATENT)[-1:]))
    # the parameters feed the likelihood directly
    log_prob = modality.likelihood(params, len(modality.shape)).log_prob(inputs(modality, lead))
    assert log_prob.shape == lead and torch.isfinite(log_prob).all()


def test_decoder_outputs_logits_not_probabilities():
    decoder = Decoder(MODALITIES["image-8x8"], LATENT, **SMALL)
    params = decoder(10 * torch.randn(64, LATENT))
    assert params.min() < 0 or params.max() > 1


def test_categorical_encoder_one_hot_sees_the_class():
    encoder = Encoder(MODALITIES["label"], LATENT, **SMALL)
    out = encoder(torch.arange(6))
    assert not torch.allclose(out.mean[0], out.mean[1])


def test_encoder_without_hidden_layers():
    encoder = Encoder(MODALITIES["vector"], LATENT, hidden=())
    assert encoder(torch.rand(3, 5)).mean.shape == (3, LATENT)


def test_expert_head_variance_bounds():
    head = ExpertHead(3, LATENT, max_var=1.0)
    h = torch.randn(500, 3) * 100  # saturate the sigmoid both ways
    var = head(h).var
    assert (var > 0).all() and (var <= 1.0).all()
    assert var.max() > 0.99 and var.min() < 1e-3
    unbounded = ExpertHead(3, LATENT)(h).var
    assert (unbounded >= 1e-4).all() and unbounded.max() > 1.0


def test_encoder_passes_max_var():
    encoder = Encoder(MODALITIES["vector"], LATENT, **SMALL, max_var=0.5)
    with torch.no_grad():
        encoder.head.linear.weight.mul_(1000)
    assert (encoder(torch.rand(100, 5) * 10).var <= 0.5).all()


def test_gated_transition_matches_its_formula():
    """mean = (1 - g) lin(z) + g nl(z), std = softplus(scale(nl(z))) + min_std: the BFVI reference's
    GTF, whose std reads the nonlinear branch directly (no ReLU)."""
    torch.manual_seed(0)
    gtf = GatedTransition(3, 8, min_std=0.01)
    z = torch.randn(4, 2, 3)
    g = torch.sigmoid(gtf.gate[2](torch.relu(gtf.gate[0](z))))
    nl = gtf.nonlinear[2](torch.relu(gtf.nonlinear[0](z)))
    out = gtf(z)
    torch.testing.assert_close(out.mean, (1 - g) * gtf.linear(z) + g * nl)
    torch.testing.assert_close(out.std, nn.functional.softplus(gtf.scale(nl)) + 0.01)
    assert (out.std >= 0.01).all()
    torch.testing.assert_close(GatedTransition(3, 8, identity=True).linear(z), z)  # Krishnan et al.'s initialisation


SEQUENTIAL = {
    "vector": Modality("a", (3,), sequential=True),
    "label": Modality("y", (), likelihood="categorical", num_classes=4, sequential=True),
}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("modality", SEQUENTIAL.values(), ids=SEQUENTIAL.keys())
def test_sequence_encoder_shapes_mask_and_gradient(modality, cell):
    encoder = SequenceEncoder(modality, LATENT, hidden=8, cell=cell)
    x = inputs(modality, (2, 3, 5))
    observed = torch.rand(x.shape) > 0.3
    h = encoder(x, observed)
    assert h.shape == (2, 3, LATENT)
    # unobserved entries are not read: changing them changes nothing
    changed = torch.where(observed, x, inputs(modality, (2, 3, 5)))
    torch.testing.assert_close(encoder(changed, observed), h)
    # the mask is read: a missing entry is not an observed zero
    zeros = torch.where(observed, x, torch.zeros_like(x))
    assert not torch.allclose(encoder(zeros, torch.ones_like(observed)), h)
    h.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_sequence_decoder_unrolls_over_steps_and_gradient(cell):
    modality = SEQUENTIAL["vector"]
    decoder = SequenceDecoder(modality, LATENT, hidden=8, cell=cell)
    z = torch.randn(2, 3, LATENT, requires_grad=True)
    params = decoder(z, 7)
    assert params.shape == (2, 3, 7, 3, modality.likelihood.n_params)
    assert decoder(z, 2).shape[2] == 2
    # each sample's sequence depends on its own code only
    torch.testing.assert_close(decoder(z[:1, :1], 7), params[:1, :1])
    params.sum().backward()
    assert z.grad.abs().sum() > 0 and all(p.grad is not None for p in decoder.parameters())


def test_mean_pooled_sequence_encoder_ignores_trailing_unobserved_steps():
    modality = SEQUENTIAL["vector"]
    encoder = SequenceEncoder(modality, LATENT, hidden=8, pool="mean")
    x = torch.randn(4, 9, 3)
    observed = torch.ones(x.shape, dtype=torch.bool)
    observed[:, 6:] = False  # steps 6-8 are padding
    h = encoder(x, observed)
    torch.testing.assert_close(encoder(x[:, :6], observed[:, :6]), h)
    # the mean of the hidden states over the observed steps, by hand
    values = torch.cat([x[:, :6], torch.ones_like(x[:, :6])], -1)
    out, _ = encoder.rnn(values)
    torch.testing.assert_close(h, encoder.head(out.mean(1)))
    with pytest.raises(ValueError, match="pool"):
        SequenceEncoder(modality, LATENT, pool="max")


def test_sequence_nets_refuse_an_unknown_cell():
    with pytest.raises(ValueError, match="cell"):
        SequenceEncoder(SEQUENTIAL["vector"], LATENT, cell="rnn")
    with pytest.raises(ValueError, match="cell"):
        SequenceDecoder(SEQUENTIAL["vector"], LATENT, cell="rnn")


@pytest.mark.parametrize("modality", [Modality("v", (5,)), Modality("c", (), "categorical", num_classes=3),
                                      Modality("img", (3, 8, 8), net="conv"), Modality("s", (2,), sequential=True)])
def test_feature_encoder_ignores_unobserved_values_and_factor_decoder_shapes(modality):
    lead = (4, 6) if modality.sequential else (4,)
    x = torch.randint(3, lead).float() if modality.categorical else torch.rand(*lead, *modality.shape)
    encoder = FeatureEncoder(modality, 7, hidden=(8,), channels=(4,), rnn_hidden=8)
    observed = torch.ones(x.shape, dtype=torch.bool)
    observed[0] = False
    other = x.clone()
    other[0] = 2 if modality.categorical else -5.0
    h = encoder(x, observed)
    assert h.shape == (4, 7)
    torch.testing.assert_close(encoder(other, observed), h)
    decoder = FactorDecoder(modality, 7, hidden=(8,), channels=(4,), rnn_hidden=8)
    out = decoder(h, 6) if modality.sequential else decoder(h)
    assert out.shape == (*lead, *modality.shape, modality.likelihood.n_params)
    if modality.sequential:
        with pytest.raises(ValueError, match="number of steps"):
            decoder(h)


def test_conv_nets_take_the_activation():
    image = Modality("m", (3, 28, 28), "laplace", net="conv")
    for net in (Encoder(image, 8, hidden=(32,), channels=(4, 8, 16), activation=nn.ReLU),
                Decoder(image, 8, channels=(4, 8, 16), activation=nn.ReLU)):
        kinds = {type(m) for m in net.modules()}
        assert nn.ReLU in kinds and SiLU not in kinds
    default = Decoder(image, 8, channels=(4, 8, 16))
    assert SiLU in {type(m) for m in default.modules()}
    assert default(torch.zeros(2, 8)).shape == (2, 3, 28, 28, 1)  # MultiVae's 28 -> 14 -> 7 -> 4 and back


@pytest.mark.parametrize("size, padding", [((4, 4), (0, 0)), ((4, 5), (0, 1)), ((3, 7), (1, 0))])
def test_cropped_transposed_conv_equals_the_plain_layer_in_fp32_and_bf16(size, padding):
    plain = nn.ConvTranspose2d(6, 5, 3, stride=2, padding=1, output_padding=padding)
    cropped = CroppedConvTranspose2d(6, 5, 3, stride=2, padding=1, output_padding=padding)
    cropped.load_state_dict(plain.state_dict())
    x = torch.randn(3, 6, *size, requires_grad=True)
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            ys = [layer(x) for layer in (plain, cropped)]
        assert ys[1].shape == ys[0].shape == (3, 5, 2 * size[0] - 1 + padding[0], 2 * size[1] - 1 + padding[1])
        grads = [torch.autograd.grad(y.float().square().sum(), [x, cropped.weight if y is ys[1] else plain.weight])
                 for y in ys]
        tol = dict(atol=2e-2, rtol=2e-2) if bf16 else dict(atol=0, rtol=0)
        torch.testing.assert_close(ys[1].float(), ys[0].float(), **tol)
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, **(dict(atol=0.1, rtol=2e-2) if bf16 else tol))


def test_cropped_transposed_conv_runs_the_full_size_kernel_only_in_bf16_on_the_cpu(monkeypatch):
    kernel, sizes = torch.nn.functional.conv_transpose2d, []

    def recorded(*args, **kwargs):
        y = kernel(*args, **kwargs)
        sizes.append(tuple(y.shape[-2:]))
        return y

    monkeypatch.setattr(torch.nn.functional, "conv_transpose2d", recorded)
    layer = CroppedConvTranspose2d(6, 5, 3, stride=2, padding=1, output_padding=(0, 1))
    x = torch.randn(2, 6, 4, 4)
    for bf16, computed in ((False, (7, 8)), (True, (8, 8))):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            assert layer(x).shape[-2:] == (7, 8)
        assert sizes.pop() == computed
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x, output_size=[7, 8]).shape[-2:] == (7, 8)  # an explicit size keeps the plain kernel
    assert sizes.pop() == (7, 8)


def test_masked_encoder_reads_the_observed_entries_and_tells_a_gap_from_a_zero():
    encoder = Encoder(MODALITIES["vector"], LATENT, **SMALL, with_mask=True)
    x, observed = torch.randn(3, 5), torch.tensor([True, False, True, True, False]).expand(3, 5)
    out = encoder(x, observed)
    torch.testing.assert_close(encoder(x + 7 * ~observed, observed).mean, out.mean)  # hidden values are never read
    assert not torch.allclose(encoder(x + 1, observed).mean, out.mean)
    zero = x * observed  # the same input with the gaps observed as zeros
    assert not torch.allclose(encoder(zero, torch.ones_like(observed)).mean, out.mean)
    with pytest.raises(ValueError, match="observed"):
        encoder(x)
    for name in ("labels", "image-mlp", "scalar"):
        modality = MODALITIES[name]
        x = inputs(modality, (2, 3))
        assert Encoder(modality, LATENT, **SMALL, with_mask=True)(x, torch.rand(x.shape) < 0.5).mean.shape == (2, 3, LATENT)
    with pytest.raises(ValueError, match="with_mask"):
        Encoder(Modality("img", (1, 8, 8), net="conv"), LATENT, **SMALL, with_mask=True)
