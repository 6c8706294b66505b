import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal import missing


@pytest.fixture(scope="module")
def table():
    return pm.datasets.generate_spirals()


def test_spirals_match_the_reference_generator(table):
    order = table.drop_duplicates("spiral")["spiral"].tolist()
    assert order[:10] == [507, 818, 452, 368, 242, 929, 262, 810, 318, 49]
    first = table[table["spiral"] == 507]  # the first spiral generated
    assert first["r"].iloc[0] == pytest.approx(0.42285, abs=1e-5) and first["r"].iloc[-1] == pytest.approx(2.58749, abs=1e-5)
    assert first["theta"].iloc[0] == pytest.approx(-0.69581, abs=1e-5)
    assert first["theta"].iloc[-1] == pytest.approx(-14.03427, abs=1e-5)
    assert first["direction"].iloc[0] == -1 and first["ratio"].iloc[0] == pytest.approx(0.77353, abs=1e-5)
    assert table["noisy_x"].sum() == pytest.approx(10492.856, abs=1e-3)
    assert (table["x"] ** 2 + table["y"] ** 2).mean() == pytest.approx(2.82, abs=0.005)
    noise = ((table["noisy_x"] - table["x"]) ** 2 + (table["noisy_y"] - table["y"]) ** 2).mean()
    assert noise == pytest.approx(0.0199, abs=1e-4)
    ids = table.drop_duplicates("spiral")
    assert sorted(ids[ids["split"] == "train"]["spiral"])[:5] == [0, 2, 3, 4, 5]
    assert sorted(ids[ids["split"] == "test"]["spiral"])[:5] == [1, 7, 10, 15, 20]


def test_spiral_batches():
    train, test = pm.load_spirals()
    assert len(train) == 600 and len(test) == 400
    assert train.values["x"].shape == (600, 100) and train.present("x").shape == (600, 100)
    assert set(train.values["direction"].unique().tolist()) == {0, 1}
    # direction is constant along a sequence
    assert (train.values["direction"] == train.values["direction"][:, :1]).all()


def small_sequences(b=6, t=20):
    schema = pm.Schema([pm.Modality("x", (2,), sequential=True), pm.Modality("y", (), sequential=True)])
    g = torch.Generator().manual_seed(0)
    return pm.Batch.from_data(schema, {"x": torch.randn(b, t, 2, generator=g), "y": torch.randn(b, t, generator=g)})


def test_drop_steps_deletes_exactly_that_many_steps_per_modality_and_sequence():
    batch = small_sequences()
    out = missing.drop_steps(batch, 0.5, generator=torch.Generator().manual_seed(1))
    assert (out.present("x").sum(1) == 10).all() and (out.present("y").sum(1) == 10).all()
    assert not torch.equal(out.present("x"), out.present("y"))  # independent per modality
    assert torch.equal(out.observed["x"].all(-1), out.present("x"))  # a step goes whole


def test_drop_burst_removes_one_contiguous_run():
    out = missing.drop_burst(small_sequences(), 0.25, ["y"], torch.Generator().manual_seed(2))
    assert out.present("x").all()
    for row in out.present("y"):
        gone = (~row).nonzero().squeeze(1)
        assert len(gone) == 5 and (gone.diff() == 1).all()


def test_keep_segment_and_errors():
    out = missing.keep_segment(small_sequences(), 0.25, 0.75)
    assert torch.equal(out.present("y")[0], torch.arange(20).ge(5) & torch.arange(20).lt(15))
    with pytest.raises(ValueError, match="segment"):
        missing.keep_segment(small_sequences(), 0.8, 0.2)
    static = pm.Batch.from_data(pm.Schema([pm.Modality("s", (1,))]), {"s": np.zeros((2, 1))})
    with pytest.raises(ValueError, match="no sequential modality"):
        missing.drop_steps(static, 0.5)
    with pytest.raises(ValueError, match="'s' is not sequential"):
        missing.drop_burst(static, 0.5, ["s"])


def test_whole_modality_deletion_per_sequence():
    out = missing.drop_modalities(small_sequences(40), 0.5, torch.Generator().manual_seed(3))
    per_sequence = torch.stack([out.observed["x"].flatten(1).any(1), out.observed["y"].flatten(1).any(1)])
    assert per_sequence.any(0).all() and not per_sequence.all()
    # a kept modality keeps every step
    assert torch.equal(out.present("y").any(1), out.present("y").all(1))
