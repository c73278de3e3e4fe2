"""An exponential moving average of the model's weights (``trainer.ema``: the decay per step).

The average is what validation scores and what checkpoints store as ``model`` (so ``best.pt`` holds the weights its
validation picked, and evaluation and ``avtrain synth`` load it like any other checkpoint); the weights being
trained are stored beside it as ``train_model`` for resuming. Early on the decay is capped at (1 + n) / (10 + n) after
n updates (TensorFlow's ExponentialMovingAverage with num_updates), so the average does not start as mostly the
random initial weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"trainer.ema {decay}: a decay between 0 and 1 (e.g. 0.999)")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        own, new = self.model.state_dict(), model.state_dict()
        for name, value in own.items():
            if value.is_floating_point():  # weights and batch-norm statistics are averaged
                value.lerp_(new[name].detach(), 1.0 - decay)
            else:  # counters (num_batches_tracked) follow the model
                value.copy_(new[name])

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.model.load_state_dict(state)
        self.updates = updates
