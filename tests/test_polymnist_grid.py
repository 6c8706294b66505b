"""The PolyMNIST benchmark's grid part: it pools the committed coherence records by seed and
states, given each number of observed modalities, whether polymodal is ahead of MultiVae."""

import statistics

import pytest
from matplotlib.image import imread

from benchmarks import polymnist
from benchmarks.polymnist import GIVEN, grid_figure, noise, pooled, side, verdict


def record(row: str, seed: int, value: float, *, eta: str = "η = 0.5", started: str = "2026-01-01", **arguments) -> dict:
    cells = {c: {"values": [value], "seeds": [seed]} for c in GIVEN}
    return {"benchmark": "polymnist", "started": started,
            "arguments": {"part": "coherence", "epochs": 100, "batch_size": 64, "limit": None, **arguments},
            "tables": {"classifiers": {"rows": {"ClfImg test accuracy": {"m0": {"values": [0.9], "seeds": [None]}}}},
                       eta: {"rows": {row: cells}}}}


def cell(*values: float) -> dict[str, dict[int, float]]:
    """The same values over seeds 0, 1, ... given every n."""
    return {c: dict(enumerate(values)) for c in GIVEN}


def test_pooled_gathers_seeds_from_separate_records_and_a_rerun_replaces_its_seed():
    records = [record("MoPoE (MultiVae)", 0, 0.40), record("MoPoE (MultiVae)", 1, 0.44),
               record("MoPoE (MultiVae)", 0, 0.42, started="2026-02-01"),
               record("MoPoE (MultiVae)", 2, 0.9, epochs=20), record("MoPoE (MultiVae)", 3, 0.9, limit=1000),
               record("MoPoE (MultiVae)", 4, 0.9, part="labels"), record("MoPoE (MultiVae)", 5, 0.9, batch_size=256),
               record("MoPoE (MultiVae)", 6, 0.9, device="cuda"),
               {"benchmark": "imputer", "started": "2026-01-01", "arguments": {}, "tables": {}}]
    cells = pooled(records, epochs=100, batch=64)
    assert list(cells) == ["η = 0.5"]  # the classifiers' table is not a coherence table
    assert cells["η = 0.5"]["MoPoE (MultiVae)"]["given 3"] == {0: 0.42, 1: 0.44}
    assert pooled(records, epochs=100, batch=64, device="cuda:0")["η = 0.5"]["MoPoE (MultiVae)"]["given 1"] == {6: 0.9}


def test_noise_is_the_median_sd_over_the_cells_with_several_seeds():
    cells = {"η = 0": {"A (polymodal bf16)": cell(0.4, 0.6), "A (MultiVae)": cell(0.5), "B (MultiVae)": cell(0.5, 0.5)}}
    assert noise(cells) == pytest.approx(statistics.median([statistics.stdev([0.4, 0.6])] * 4 + [0.0] * 4))


@pytest.mark.parametrize("ours, theirs, spread, expected", [
    (cell(0.52), cell(0.50), 0.01, "ahead"),               # one seed each: the spread is the SD
    (cell(0.52), cell(0.50), 0.03, "tie"),
    (cell(0.47), cell(0.50), 0.01, "behind"),
    (cell(0.50, 0.56), cell(0.50, 0.50), 0.001, "tie"),    # several seeds: their own SD (0.042), not the spread
    (cell(0.60, 0.60), cell(0.50, 0.50), 0.5, "ahead"),   # SD 0 on both sides
])
def test_verdict_compares_the_gap_of_the_means_with_one_sd(ours, theirs, spread, expected):
    assert verdict(ours, theirs, spread) == expected


def test_verdict_names_the_n_where_the_words_differ():
    ours = {"given 1": {0: 0.50}, "given 2": {0: 0.60}, "given 3": {0: 0.62}, "given 4": {0: 0.64}}
    theirs = cell(0.50)
    assert verdict(ours, theirs, 0.01) == "ahead given 2-4; tie given 1"
    ours["given 3"] = {0: 0.40}
    assert verdict(ours, theirs, 0.01) == "ahead given 2 and 4; tie given 1; behind given 3"


def test_side_reads_the_model_and_the_side_from_a_row():
    assert side("MMVAE+ (polymodal bf16)") == ("MMVAE+", "polymodal bf16")
    assert side("MoPoE (MultiVae)") == ("MoPoE", "MultiVae")
    assert side("MVTCAE (polymodal bf16) (complete only)") == ("MVTCAE", "polymodal bf16, complete only")
    assert side("MoPoE (MultiVae) (complete only)") == ("MoPoE", "MultiVae, complete only")


def test_the_grid_figure_has_a_panel_per_eta_and_model(tmp_path):
    cells = {"η = 0": {"MoPoE (polymodal bf16)": cell(0.5, 0.55), "MoPoE (MultiVae)": cell(0.45)},
             "η = 0.5": {"MVAE (MultiVae)": cell(0.1), "MVAE (MultiVae) (complete only)": cell(0.1),
                         "MVAE (polymodal fp32) (complete only)": cell(0.1)}}
    path = grid_figure(cells, {("η = 0", "MoPoE"): ["ahead"]}, ["MVAE", "MoPoE"], tmp_path / "grid.png")
    pixels = imread(path)
    assert pixels.shape[:2] == (round(2 * 2.3 * 110), round(2 * 2.6 * 110))  # two η rows, two model columns, 110 dpi
    assert pixels[..., :3].std() > 0.05  # lines and text drawn, not a blank canvas


def test_the_grid_part_refuses_a_budget_no_record_has(monkeypatch):
    monkeypatch.setattr(polymnist, "load_records", lambda: [record("MoPoE (MultiVae)", 0, 0.4)])
    with pytest.raises(SystemExit, match="no coherence records at --epochs 7 and --batch-size 64 on --device cpu"):
        polymnist.run_grid(type("Args", (), {"epochs": 7, "batch_size": 64, "device": "cpu"})(), run=None)


class Recorder:
    """The part of ``benchmarks.results.Run`` the grid part writes through, keeping the cells."""

    def __init__(self, folder):
        self.folder, self.cells, self.figures = folder, {}, []

    def table(self, name, caption):
        self.cells.setdefault(name, {})

    def add(self, table, row, column, value, seed=None):
        self.cells[table].setdefault(row, {})[column] = value

    def figure_path(self, stem):
        return self.folder / f"{stem}.png"

    def figure(self, path, caption):
        self.figures.append(path)


def test_the_grid_part_compares_polymodal_with_each_multivae_side(monkeypatch, tmp_path):
    rows = [("MVAE (polymodal bf16)", 0.40), ("MVAE (MultiVae)", 0.10), ("MVAE (MultiVae recipe)", 0.45),
            ("MVAE (polymodal bf16) (complete only)", 0.10)]
    monkeypatch.setattr(polymnist, "load_records", lambda: [record(row, seed, value + 0.001 * seed)
                                                            for row, value in rows for seed in (0, 1)])
    run = Recorder(tmp_path)
    polymnist.run_grid(type("Args", (), {"epochs": 100, "batch_size": 64, "device": "cpu"})(), run)
    gaps = run.cells["polymodal − MultiVae"]
    assert set(gaps) == {"MVAE (polymodal bf16), η = 0.5: ahead",
                         "MVAE (polymodal bf16 − MultiVae recipe), η = 0.5: behind"}
    assert gaps["MVAE (polymodal bf16 − MultiVae recipe), η = 0.5: behind"]["given 2"] == pytest.approx(-0.05)
    assert run.cells["η = 0.5"]["MVAE (MultiVae recipe)"]["seeds"] == 2
    assert run.figures == [tmp_path / "polymnist_grid.png"] and run.figures[0].exists()


@pytest.mark.parametrize("argv, got", [
    (["--multivae", "MoPoE", "--eta", "0.5"], "got --multivae MoPoE --eta 0.5"),
    (["--multivae", "MVAE", "--eta", "0.0", "0.5"], "got --multivae MVAE --eta 0.0 0.5"),
])
def test_the_multivae_recipe_is_refused_where_multivae_has_none(monkeypatch, capsys, argv, got):
    monkeypatch.setattr("sys.argv", ["polymnist", "--multivae-recipe", *argv])
    with pytest.raises(SystemExit) as refused:
        polymnist.main()
    assert refused.value.code == 2
    assert f"--multivae-recipe: MultiVae's case study has a partial-data recipe for MVAE at η > 0 only, {got}" \
        in capsys.readouterr().err


def test_the_recipes_name_their_settings_for_the_models_asked():
    assert polymnist.MultiVae.recipes(["MVAE", "MoPoE"]) == \
        "MVAE (MultiVae recipe): use_subsampling=False, beta=2.5, lr 0.0005"
    assert polymnist.MultiVae.recipes(["MoPoE"]) == ""
