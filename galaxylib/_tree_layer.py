"""Dieleman's decision-tree output layer (kept apart from galaxylib.tree so that the tree imports without torch)."""

import torch
from torch import nn

from galaxylib.tree import QUESTION_SLICES, conditionals_to_targets


class DecisionTreeNorm(nn.Module):
    """Dieleman's output layer: ReLU, divisive normalisation per question, then the cumulative rescaling.

    Its outputs satisfy the Kaggle constraints by construction. The paper tried a layer like this and found
    a plain sigmoid better; we keep it as an ablation (`--tree-output`).

    One change from Dieleman's `max(z, 0) / (sum + 1e-12)`: a tiny floor `eps` is added to every answer, so a
    question whose logits are all negative (common at initialisation) becomes uniform instead of all zeros,
    which would break the constraints. Where any logit is positive the difference is of order `eps`.
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        z = torch.relu(logits.float()) + self.eps
        parts = [z[:, s] / z[:, s].sum(1, keepdim=True) for s in QUESTION_SLICES]
        return conditionals_to_targets(torch.cat(parts, 1))
