"""The benchmarks' results helper: a run's record round-trips through JSON, and the results page
is exactly what the committed records render; every benchmark imports without running."""

import argparse
import importlib
import importlib.util
import json
import sys

import pytest
import torch

from benchmarks import results

BENCHMARKS = sorted(p.stem for p in results.HERE.glob("*.py") if p.stem not in ("__init__", "results", "site"))
# libraries installed only in the benchmarks' own environments, never in the project's
COMPARED = {"multivae", "pythae", "pypots", "pygrinder", "hyperimpute"}


def test_a_run_records_its_context_and_every_value(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["/repo/benchmarks/toy.py", "--seeds", "0", "1"])
    run = results.Run("toy", {"seeds": [0, 1], "out": tmp_path}, title="A toy", libraries=["no-such-library"])
    run.table("error", "lower is better")
    for seed, value in [(0, 1.0), (1, 3.0)]:
        run.add("error", row="ours", column="10%", value=value, seed=seed)
    run.add("error", row="mean", column="10%", value=4.0, seed=0)
    run.note("a note")
    path = run.save("small", folder=tmp_path)

    record = json.loads(path.read_text())
    assert path == tmp_path / "toy" / "small.json"
    assert record["command"] == "python -m benchmarks.toy --seeds 0 1"
    assert record["arguments"] == {"seeds": [0, 1], "out": str(tmp_path)} and record["seeds"] == [0, 1]
    assert record["versions"]["no-such-library"] == "not installed" and record["versions"]["python"]
    assert {"cpu", "cores", "threads", "gpu"} <= set(record["machine"]) and record["wall_s"] >= 0
    assert record["tables"]["error"]["rows"]["ours"]["10%"] == {"values": [1.0, 3.0], "seeds": [0, 1]}
    assert run.values("error") == {"ours": {"10%": [1.0, 3.0]}, "mean": {"10%": [4.0]}}

    page = results.render(results.load_records(tmp_path))
    assert page.startswith(results.HEADER)
    assert "| ours | 2 ± 1.41 |" in page and "| mean | 4 |" in page
    assert "**error**: lower is better" in page and "- a note" in page and "## toy" in page


def test_the_results_page_is_what_the_committed_records_render():
    assert results.PAGE.read_text() == results.render(results.load_records())


def test_record_options_name_the_record_and_add_notes(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["/repo/benchmarks/toy.py", "--seed", "3", "--note", "a shared machine", "--record", "small"])
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int)
    args = results.record_options(parser).parse_args()
    run = results.Run("toy", args)
    run.add("error", row="ours", column="all", value=1.0, seed=args.seed)
    assert run.figure_path("curve") == results.FIGURES / "curve_small.png"
    record = json.loads(run.save(folder=tmp_path).read_text())
    assert record["run"] == "small" and record["seeds"] == [3] and record["notes"] == ["a shared machine"]
    assert record["command"] == "python -m benchmarks.toy --seed 3 --note 'a shared machine' --record small"
    assert results.Run("toy", {"record": None}).figure_path("curve") == results.FIGURES / "curve.png"


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_imports_without_running(name, monkeypatch):
    def ran(*args, **kwargs):
        raise AssertionError(f"benchmarks.{name} ran on import")

    monkeypatch.setattr(results.Run, "__init__", ran)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", ran)
    monkeypatch.delitem(sys.modules, f"benchmarks.{name}", raising=False)
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as error:
        if error.name.split(".")[0] not in COMPARED:
            raise
        pytest.skip(f"benchmarks.{name} needs {error.name}, installed only in the benchmarks' environment")
    assert callable(module.main)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="a real torchvision is installed")
def test_the_torchvision_stand_in_serves_multivae_s_imports(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", sys.meta_path.copy())  # the stand-in's finder goes with the test
    from benchmarks.stubs import use_torchvision_stand_in

    use_torchvision_stand_in()
    try:
        from torchvision.transforms import ToTensor
        from torchvision.utils import make_grid

        assert make_grid(torch.zeros(3, 1, 4, 4), nrow=2).shape == (1, 14, 14)
        with pytest.raises(NotImplementedError, match="stand-in"):
            ToTensor()(0)
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
            del sys.modules[name]
