"""AblationCAM (pytorch-grad-cam) on the 37 regression outputs, for the baseline CNNs, ResNets and DINOv2.

The paper's Fig. 8 shows AblationCAM maps of the last convolutional layer. AblationCAM zeroes one channel at a
time and weighs it by (s - s_ablated) / s, with s the explained score. Three pitfalls with our outputs:

- grad-cam picks argmax(outputs) when no target is given, which means nothing for 37 vote fractions, so
  every call here takes explicit targets (answer columns) and refuses to run without them.
- A sigmoid output saturates near 1 (ablating a channel hardly moves it), and the raw pre-sigmoid logit is
  negative for every answer predicted under 0.5, which flips the sign of all weights: the map would then
  show the evidence *against* the answer. We therefore explain softplus(logit) of the answer: positive for
  every prediction, monotone in the predicted vote fraction, and equal to the logit for confident answers.
  `LogitsModel` exposes the logits to grad-cam; `AnswerTarget` applies the softplus.
- A score near 0 only scales the weights of that image (maps are min-max scaled per image anyway), but maps
  of rare answers are noise: `select_targets` picks answers whose predicted value is non-trivial.

Which layer: the paper explains the last convolutional layer (the registry's `ModelSpec.cam_layer`) at 128 px,
where the baseline's bottleneck is 8x8. At the small inputs of the quick and smoke profiles that layer is 1x1 or
2x2 cells, which says nothing about where in a galaxy the evidence lies. `choose_cam_layer` therefore keeps the
registry's layer when its grid has at least `MIN_CAM_CELLS` cells a side and otherwise takes the deepest earlier
layer that has: the trained model at its own input size, one stage earlier (fewer channels, so also cheaper),
rather than the trained model on an upsampled input it never saw. A ViT has one patch grid in every block, so no
earlier layer helps; its map at a small input is returned unresolved and labelled as such.

ViTs: the activations are tokens, so `model.cam_reshape_transform` drops the prefix tokens (DINOv2-reg4:
1 class + 4 register tokens) and lays the patch tokens out on their grid, and `AblationLayerVit` ablates them.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galaxylib import tree

# answers whose maps say something about shape: Q1 smooth/features, Q2 edge-on, Q4 spiral, Q7 roundness
SHAPE_ANSWERS: tuple[str, ...] = (
    "Class1.1", "Class1.2", "Class2.1", "Class4.1", "Class7.1", "Class7.2", "Class7.3",
)  # fmt: skip


def answer_label(column: str | int) -> str:
    """'Class1.1' -> 'Q1 smooth' (for titles)."""
    name = tree.COLUMNS[column] if isinstance(column, int) else column
    q = tree.question_of_column(name)
    return f"Q{q.number} {q.answers[q.columns.index(name)]}"


def column_index(column: str | int) -> int:
    if isinstance(column, int | np.integer):
        if not 0 <= int(column) < tree.NUM_OUTPUTS:
            raise ValueError(f"answer index {column} is not in 0..{tree.NUM_OUTPUTS - 1}")
        return int(column)
    if column not in tree.COLUMNS:
        raise ValueError(f"unknown answer column {column!r} (expected e.g. 'Class1.1')")
    return tree.COLUMNS.index(column)


class LogitsModel(nn.Module):
    """Wraps a GalaxyModel so that grad-cam sees the 37 pre-activation outputs (`model.logits`).

    The wrapped model stays a child module, so grad-cam can find and swap its target layer.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)


class AnswerTarget:
    """grad-cam target: softplus of one answer's logit (positive, monotone in the predicted vote fraction)."""

    def __init__(self, column: str | int):
        self.index = column_index(column)
        self.column = tree.COLUMNS[self.index]

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        z = model_output[..., self.index] if model_output.ndim == 1 else model_output[:, self.index]
        return F.softplus(z.float())

    def __repr__(self) -> str:
        return f"AnswerTarget({self.column!r})"


def _targets_for(targets, n: int) -> list[AnswerTarget]:
    if targets is None:
        raise ValueError("explicit targets are required (answer columns such as 'Class1.1'): with none, "
                         "grad-cam would explain argmax(outputs), meaningless for 37 regression outputs")
    if isinstance(targets, str | int | np.integer):
        targets = [targets] * n
    targets = list(targets)
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} images: give one answer column per image")
    return [t if isinstance(t, AnswerTarget) else AnswerTarget(t) for t in targets]


def ablation_cam(model: nn.Module, images: torch.Tensor, targets: str | int | Sequence, *,
                 layer: str | None = None, batch_size: int = 32, ratio_channels_to_ablate: float = 1.0,
                 quiet: bool = True) -> np.ndarray:
    """AblationCAM maps (B, H, W) in [0, 1] of one layer for normalised images (B, 3, H, W).

    targets: one answer column (name or index) for all images, or one per image; required. layer: the module
    path below `model.backbone` (e.g. a `choose_cam_layer(...).name`); None: `model.cam_layer`, the registry's.
    The maps are positive-only and min-max scaled per image (grad-cam's convention): compare shapes, not
    magnitudes; grad-cam resizes them from the layer's grid to the input size (bilinear).
    ratio_channels_to_ablate < 1 ablates only the channels grad-cam's SVD heuristic ranks highest and lowest
    (2 x ratio of them), which is what makes DINOv2 or ResNet50 maps affordable on a CPU.
    """
    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit

    if images.ndim != 4:
        raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
    cam_targets = _targets_for(targets, images.shape[0])
    if not 0 < ratio_channels_to_ablate <= 1:
        raise ValueError(f"ratio_channels_to_ablate must be in (0, 1], got {ratio_channels_to_ablate}")
    was_training = model.training
    wrapped = LogitsModel(model).eval()
    device = next(model.parameters()).device
    is_vit = bool(getattr(model, "is_vit", False))
    target_layer = _layer_module(model, layer)
    ablation = AblationLayerVit() if is_vit else AblationLayer()  # fresh: grad-cam's default is shared state
    cam = AblationCAM(wrapped, target_layers=[target_layer],
                      reshape_transform=getattr(model, "cam_reshape_transform", None), ablation_layer=ablation,
                      batch_size=batch_size, ratio_channels_to_ablate=ratio_channels_to_ablate)
    # grad-cam draws a tqdm bar per image and channel batch on stderr; keep notebooks and logs readable
    quiet_ctx = contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()
    try:
        with quiet_ctx:
            maps = cam(input_tensor=images.to(device), targets=cam_targets)
    finally:
        cam.activations_and_grads.release()
        model.train(was_training)
    return np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def select_targets(preds: np.ndarray, k: int = 2, candidates: Sequence[str] = SHAPE_ANSWERS,
                   min_value: float = 0.1) -> list[list[str]]:
    """For each galaxy, the k candidate answers with the highest predicted value (at least `min_value`).

    Explaining an answer the model gives ~0 is explaining noise; when fewer than k candidates pass, the
    highest ones are used anyway so that every galaxy gets k maps.
    """
    preds = np.asarray(preds, np.float64)
    idx = [column_index(c) for c in candidates]
    out = []
    for row in preds:
        order = sorted(idx, key=lambda i: -row[i])
        good = [i for i in order if row[i] >= min_value]
        chosen = (good + [i for i in order if i not in good])[:k]
        out.append([tree.COLUMNS[i] for i in chosen])
    return out


# ----------------------------------------------------------------------------------------------------------
# examples for the notebooks' figures


@dataclass
class Examples:
    """Validation galaxies prepared for CAM: model inputs (eval transform) and images to draw on."""

    ids: np.ndarray
    inputs: torch.Tensor  # (B, 3, img_size, img_size), normalised as the model sees them
    display: list[np.ndarray]  # (H, W, 3) in [0, 1]: the centre crop the model sees, at display resolution
    labels: np.ndarray  # (B, 37)


def pick_galaxies(labels: np.ndarray, n: int, columns: Sequence[str] = SHAPE_ANSWERS) -> list[int]:
    """n distinct rows: the clearest example of each answer in `columns` in turn (highest label value)."""
    labels = np.nan_to_num(np.asarray(labels, np.float64), nan=-1.0)
    chosen: list[int] = []
    for column in list(columns) * 2:
        if len(chosen) >= min(n, len(labels)):
            break
        order = np.argsort(-labels[:, column_index(column)], kind="stable")
        best = next((int(i) for i in order if int(i) not in chosen), None)
        if best is not None:
            chosen.append(best)
    return chosen


def validation_examples(run_dir: str | Path, n: int, display_px: int = 160) -> Examples:
    """n validation galaxies of a run (its split.csv), chosen by `pick_galaxies`, ready for `ablation_cam`."""
    from galaxylib import data as gdata
    from galaxylib.augment import eval_transform
    from galaxylib.rundir import RunDir

    run = RunDir(run_dir)
    cfg = run.config()
    if cfg is None:
        raise ValueError(f"{run.path} is not a run folder")
    galaxies = gdata.load_folders(cfg.data_dirs, verify_images=False, progress=False)
    rows = np.flatnonzero(np.isin(galaxies.ids, list(run.ids_in("val"))))
    rows = rows[pick_galaxies(galaxies.labels[rows], n)]
    paths = [galaxies.image_paths[i] for i in rows]
    cache = np.stack([gdata.load_image(p, crop=cfg.source_crop, size=cfg.cache_size) for p in paths])
    inputs = eval_transform(torch.from_numpy(cache).permute(0, 3, 1, 2), source_crop=cfg.source_crop,
                            out_size=cfg.img_size, eval_crop=cfg.eval_crop)  # fmt: skip
    display = [gdata.load_image(p, crop=cfg.eval_crop, size=display_px) / 255.0 for p in paths]
    return Examples(galaxies.ids[rows], inputs, display, galaxies.labels[rows])


MIN_CAM_CELLS = 8  # a map coarser than 8x8 cells cannot tell a galaxy's centre from its disk or arms


def _layer_module(model: nn.Module, layer: str | None) -> nn.Module:
    if layer is None:
        return model.cam_target_layer
    try:
        return model.backbone.get_submodule(layer)
    except AttributeError as err:
        raise ValueError(f"model {getattr(model, 'name', '?')!r} has no layer {layer!r} below its backbone "
                         f"(candidates: {', '.join(cam_layer_candidates(model))})") from err


def cam_layer_candidates(model: nn.Module) -> list[str]:
    """The layers AblationCAM may explain, deepest first: the registry's `cam_layer`, then the output of each
    earlier stage (the layer just before a stage halves the grid, so each is the deepest at its resolution).

    Baseline CNNs: `blockN.act` (`blockN.attn` with CBAM: the block's output before its max-pool); ResNets:
    the last residual block of each stage (`layerN.K`); ConvNeXt: `stages.N`; ViTs: the registry's only.
    """
    backbone = model.backbone
    names = [model.cam_layer]
    children = dict(backbone.named_children())
    if "bottleneck" in children:  # the paper's baseline (galaxylib.models.baseline)
        blocks = [name for name in children if name.startswith("block")]
        names += [f"{b}.attn" if "attn" in dict(children[b].named_children()) else f"{b}.act"
                  for b in reversed(blocks)]  # fmt: skip
    elif "layer4" in children:  # timm ResNet
        names += [f"layer{k}.{len(children[f'layer{k}']) - 1}" for k in (4, 3, 2, 1)]
    elif "stages" in children:  # timm ConvNeXt
        names += [f"stages.{k}" for k in reversed(range(len(children["stages"])))]
    # ViTs: every block has the same patch grid, so an earlier block is not finer
    return list(dict.fromkeys(names))  # the registry's layer may also be a stage output: keep it once


def cam_grid_sizes(model: nn.Module, img_size: int, layers: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """The (h, w) grid of each layer at this input size (one forward pass): how fine its maps can be.

    layers: module paths below `model.backbone`; None: `cam_layer_candidates(model)`.
    """
    layers = list(cam_layer_candidates(model) if layers is None else layers)
    seen: dict[str, torch.Tensor] = {}
    handles = [_layer_module(model, name).register_forward_hook(
        lambda m, i, o, name=name: seen.setdefault(name, o)) for name in layers]  # fmt: skip
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, img_size, img_size, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    reshape = getattr(model, "cam_reshape_transform", None)
    grids = {}
    for name in layers:
        out = seen[name]
        if out.ndim == 3 and reshape is not None:  # ViT tokens -> (B, C, h, w)
            out = reshape(out)
        grids[name] = (int(out.shape[-2]), int(out.shape[-1]))
    return grids


def cam_grid_size(model: nn.Module, img_size: int, layer: str | None = None) -> tuple[int, int]:
    """The (h, w) grid of one layer (None: the registry's `cam_layer`) at this input size."""
    name = model.cam_layer if layer is None else layer
    return cam_grid_sizes(model, img_size, [name])[name]


@dataclass(frozen=True)
class CamLayer:
    """The layer a CAM figure explains, with its grid at the input size used.

    Attributes:
        name: module path below `model.backbone`.
        grid: (h, w) cells of its activations.
        registry_layer: the registry's `cam_layer` (for the baseline CNNs the paper's Fig. 8 layer).
        resolved: the grid has at least `min_cells` a side (False: shown anyway, labelled as too coarse).
        input_px, trained_px: set when the maps explain an upsampled input (`vit_at_input_size`): the CAM
            input's side and the size the model was trained at.
    """

    name: str
    grid: tuple[int, int]
    registry_layer: bool
    resolved: bool
    input_px: int | None = None  # the CAM input's side when it differs from the trained size (a ViT, upsampled)
    trained_px: int | None = None

    @property
    def label(self) -> str:
        """'block3.act (earlier layer), 8x8 cells', 'bottleneck.act (last layer), 8x8 cells' or
        'blocks.11.norm1 (last layer), 2x2 cells: too coarse'."""
        return self.header.replace("\n", ", ")

    @property
    def header(self) -> str:
        """`label` on two lines, for a figure's column header."""
        h, w = self.grid
        depth = "last layer" if self.registry_layer else "earlier layer"
        upsampled = f", input {self.trained_px}->{self.input_px} px" if self.input_px else ""
        return f"{self.name} ({depth})\n{h}x{w} cells{upsampled}{'' if self.resolved else ': too coarse'}"


def vit_at_input_size(model: nn.Module, img_size: int) -> nn.Module:
    """A copy of a ViT GalaxyModel that takes img_size px (timm resamples its position embeddings, bicubic).

    Every block of a ViT has the same patch grid, so no earlier layer is finer; at small profiles (28 px: 2x2
    patches of 14 px) the only way to an 8x8 map is a larger input. The copy shares nothing with `model`.
    """
    from galaxylib.models.backbones import VitTokensToGrid

    if not getattr(model, "is_vit", False):
        raise ValueError(f"{getattr(model, 'name', 'this model')} is not a ViT: choose an earlier layer instead")
    bigger = copy.deepcopy(model)
    bigger.backbone.set_input_size(img_size=(img_size, img_size))
    bigger.cam_reshape_transform = VitTokensToGrid(bigger.backbone.num_prefix_tokens,
                                                   bigger.backbone.patch_embed.grid_size)  # fmt: skip
    return bigger


def vit_cam_input_px(model: nn.Module, min_cells: int = MIN_CAM_CELLS) -> int:
    """The smallest input side that gives a ViT `min_cells` patches a side (8 x 14 = 112 px for DINOv2)."""
    return min_cells * int(model.backbone.patch_embed.patch_size[0])


def choose_cam_layer(model: nn.Module, img_size: int, min_cells: int = MIN_CAM_CELLS) -> CamLayer:
    """The deepest candidate layer whose grid is at least `min_cells` x `min_cells` at this input size.

    The registry's `cam_layer` (the paper's choice, sized for the paper's 128/224 px) wins whenever its grid is
    fine enough, e.g. the baseline's 8x8 bottleneck at 128 px; otherwise the output of an earlier stage of the
    same trained model at its own input size (e.g. the baseline's block3 at 32 px, ResNet50's layer3 at 224 px,
    where layer4 is 7x7). When no candidate is fine enough (a ViT at 28 px: 2x2 patches in every block), the
    registry's layer comes back with `resolved=False`.

    Args:
        model: a GalaxyModel (galaxylib.models.build_model or a run's load_model).
        img_size: the model's input side in px (its run's `img_size`).
        min_cells: the fewest cells a side a map needs.

    Returns:
        The chosen layer and its grid.
    """
    grids = cam_grid_sizes(model, img_size)
    fine = [name for name, (h, w) in grids.items() if min(h, w) >= min_cells]
    name = fine[0] if fine else model.cam_layer
    return CamLayer(name, grids[name], registry_layer=name == model.cam_layer, resolved=bool(fine))


@dataclass
class CamRows:
    """One row per (galaxy, answer): what plot_cam_grid draws."""

    display: list[np.ndarray]
    maps: dict[str, np.ndarray]  # model label -> (rows, H, W)
    titles: list[str]
    layers: dict[str, CamLayer]  # model label -> the layer its maps explain

    @property
    def column_titles(self) -> dict[str, str]:
        """model label -> 'Baseline\nblock3.act (earlier layer)\n8x8 cells': the figure's column headers."""
        return {name: f"{name}\n{layer.header}" for name, layer in self.layers.items()}


def explain(models: dict[str, nn.Module], examples: Examples | dict[str, Examples],
            answers_per_galaxy: int = 2, upsample_vits: bool = True, **cam_kwargs) -> CamRows:
    """AblationCAM maps of every model for the same galaxies and the same answers.

    `examples` holds the galaxies as each model sees them: one `Examples` for all, or one per model (same
    galaxies, e.g. at 32 px for a CNN and 28 px for DINOv2). The answers are those the models predict most
    strongly on average among SHAPE_ANSWERS, so the explained scores are non-trivial and shared by all models.
    Each model's layer is `choose_cam_layer` at its input size.
    upsample_vits: a ViT whose patch grid is coarser than MIN_CAM_CELLS at its trained size (DINOv2 at 28 px:
        2x2) is explained on its input upsampled to MIN_CAM_CELLS patches a side (`vit_at_input_size`), and
        the layer's label says so; False: shown at its own size, labelled "too coarse".
    cam_kwargs go to `ablation_cam` (batch_size, ratio_channels_to_ablate).
    """
    per_model = examples if isinstance(examples, dict) else {name: examples for name in models}
    first = per_model[next(iter(models))]
    for name, ex in per_model.items():
        if not np.array_equal(ex.ids, first.ids):
            raise ValueError(f"the examples for {name!r} are other galaxies than those for the first model")

    def predict(name: str) -> np.ndarray:
        model = models[name].eval()
        with torch.no_grad():
            return model(per_model[name].inputs.to(next(model.parameters()).device)).float().cpu().numpy()

    chosen_layers = {name: choose_cam_layer(models[name], int(per_model[name].inputs.shape[-1])) for name in models}
    cam_models, cam_inputs = dict(models), {name: per_model[name].inputs for name in models}
    for name, layer in chosen_layers.items():
        if not layer.resolved and upsample_vits and getattr(models[name], "is_vit", False):
            # a ViT too coarse at its trained size: explain it on a larger (upsampled) input, labelled so
            trained, px = int(cam_inputs[name].shape[-1]), vit_cam_input_px(models[name])
            cam_models[name] = vit_at_input_size(models[name], px)
            cam_inputs[name] = F.interpolate(cam_inputs[name], size=(px, px), mode="bilinear", align_corners=False)
            grid = cam_grid_size(cam_models[name], px, layer.name)
            chosen_layers[name] = CamLayer(layer.name, grid, layer.registry_layer, min(grid) >= MIN_CAM_CELLS,
                                           input_px=px, trained_px=trained)  # fmt: skip
    preds = np.mean([predict(name) for name in models], axis=0)  # at the trained sizes
    answers = select_targets(preds, k=answers_per_galaxy)
    rows = [(g, a) for g, chosen in enumerate(answers) for a in chosen]
    index = torch.tensor([g for g, _ in rows], dtype=torch.long)
    targets = [a for _, a in rows]
    maps = {name: ablation_cam(cam_models[name], cam_inputs[name][index], targets, layer=chosen_layers[name].name,
                               **cam_kwargs)
            for name in models}  # fmt: skip
    titles = [f"{first.ids[g]}: {answer_label(a)}\npredicted {preds[g, column_index(a)]:.2f}, "
              f"label {first.labels[g, column_index(a)]:.2f}" for g, a in rows]  # fmt: skip
    return CamRows([first.display[g] for g, _ in rows], maps, titles, chosen_layers)
