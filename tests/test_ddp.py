import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ddp_script import train  # noqa: E402


def torchrun(folder: Path, epochs: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).parent / "ddp_script.py"), str(folder), str(epochs)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")
def test_two_ranks_under_torchrun_match_one_process_on_the_same_global_batches(tmp_path):
    torchrun(tmp_path, epochs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [log["world"] for log in logs] == [2, 2]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    # one process, batches of 16 = the union of the two ranks' batches of 8
    single, _, history = train(batch_size=16, epochs=2)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6)
    # validation is averaged over the ranks' shards: both ranks see the full-data metric
    for log in logs:
        for mine, reference in zip(log["history"], history):
            assert mine["valid_loss"] == pytest.approx(reference["valid_loss"], rel=1e-5)
    # only rank 0 writes checkpoints and logs
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "history.csv").exists()
