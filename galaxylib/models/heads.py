"""GalaxyModel: backbone -> Linear head -> output activation, the shape every model of the paper shares, and
the two output activations: the paper's Sigmoid and Dieleman's decision-tree layer.

Ng wrapped each network as Sequential(backbone, Linear(., 37), Sigmoid). We keep the three parts apart so
that the pre-activation `logits` can be explained by AblationCAM (a sigmoid squashes the scores it divides
by) and so that the decision-tree layer can replace the Sigmoid.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from galaxylib.tree import NUM_OUTPUTS, QUESTION_SLICES, conditionals_to_targets


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


def output_activation(tree_output: bool) -> nn.Module:
    """Sigmoid (the paper: 37 independent outputs) or Dieleman's decision-tree normalisation."""
    return DecisionTreeNorm() if tree_output else nn.Sigmoid()


class GalaxyModel(nn.Module):
    """backbone (features or 1000 ImageNet logits) -> head Linear(., 37) -> activation (values in [0, 1])."""

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        in_features: int,
        *,
        tree_output: bool = False,
        cam_layer: str,
        cam_reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        is_vit: bool = False,
        weights_source: str | None = None,
    ):
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.head = nn.Linear(in_features, NUM_OUTPUTS)
        self.activation = output_activation(tree_output)
        self.cam_layer = cam_layer  # path below `backbone`; a string so the layer is not registered twice
        self.cam_reshape_transform = cam_reshape_transform
        self.is_vit = is_vit
        self.weights_source = weights_source  # pretrained file loaded, for run records; None = random init

    @property
    def cam_target_layer(self) -> nn.Module:
        """The layer AblationCAM ablates (looked up each time, so it follows the model through .to()/DDP)."""
        return self.backbone.get_submodule(self.cam_layer)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The 37 pre-activation outputs."""
        return self.head(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.logits(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, is_vit={self.is_vit}, cam_layer={self.cam_layer!r}"
