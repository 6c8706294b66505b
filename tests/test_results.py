"""The benchmarks' results helper: a run's record round-trips through JSON, and the results page
is exactly what the committed records render."""

import json

from benchmarks import results


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
