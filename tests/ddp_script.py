"""Run by tests/test_ddp.py under torchrun: train a deterministic model, save each rank's result."""

import json
import sys
from dataclasses import dataclass

import torch

import polymodal as pm


@dataclass
class LinearAEConfig:
    latent_dim: int = 2


class LinearAE(pm.Model):
    """An autoencoder without sampling noise, so two-rank and one-process runs can match exactly."""

    name = "test-linear-ae"
    Config = LinearAEConfig

    def __init__(self, schema, config=None, **kwargs):
        super().__init__(schema, config, **kwargs)
        self.encoder = torch.nn.Linear(4, self.config.latent_dim)
        self.decoder = torch.nn.Linear(self.config.latent_dim, 4)

    def loss(self, batch, beta: float = 1.0):
        x = batch.values["x"]
        mse = ((self.decoder(self.encoder(x)) - x) ** 2).mean()
        return pm.LossOutput(mse, {"mse": mse.detach()})


def data(n: int, seed: int) -> pm.Batch:
    schema = pm.Schema([pm.Modality("x", (4,))])
    return pm.Batch.from_data(schema, {"x": torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))})


def train(batch_size: int, epochs: int, out=None):
    train, valid = data(64, 0), data(21, 1)
    torch.manual_seed(0)
    model = LinearAE(train.schema)
    trainer = pm.Trainer(model, epochs=epochs, batch_size=batch_size, lr=0.05, seed=3, progress=False, out=out)
    history = trainer.fit(train, valid)
    return model, trainer, history


if __name__ == "__main__":
    folder, epochs = sys.argv[1], int(sys.argv[2])
    model, trainer, history = train(batch_size=8, epochs=epochs, out=folder + "/run")
    torch.save(model.state_dict(), f"{folder}/rank{trainer.rank}.pt")
    with open(f"{folder}/rank{trainer.rank}.json", "w") as f:
        json.dump({"world": trainer.world, "history": history}, f)
    # left to interpreter exit, gloo's threads sometimes aborted a rank ("terminate called without an active exception")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
