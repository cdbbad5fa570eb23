"""The paper's table rows as named experiments, and the profiles that scale them.

One source of truth: every row of Tables I and II is an `Experiment` here with the settings of the paper's code
(paper_code_facts.md). A `Profile` scales a row (images, epochs, pixels) to fit a machine; it never copies one.
Notebooks and the command line pick an experiment and a profile by name and get a `RunConfig`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from galaxylib import layout
from galaxylib.errors import UserError
from galaxylib.fileio import as_paths
from galaxylib.models.registry import ModelSpec, get_model_spec


@dataclass(frozen=True)
class Experiment:
    """One row of the paper's tables, as the paper's code ran it."""

    name: str
    label: str  # the row's name in the paper
    table: str  # "I", "II" or "I, II"
    model: str  # galaxylib.models name
    epochs: int
    pretrained: bool
    img_size: int  # model input, px
    crop_range: tuple[int, int]  # training zoom-crop side in original px, [low, high) as numpy integers()
    eval_crop: int  # centre crop for validation and test views, original px
    cache_size: int  # px at which the whole 424-px frame is cached (keeps every resample under 2x shrink)
    batch_size: int = 105
    lr: float = 1e-4
    min_lr: float = 1e-8
    tree_output: bool = False  # Dieleman's decision-tree output layer instead of 37 sigmoids (ours, not the paper's)

    @property
    def spec(self) -> ModelSpec:
        """The model's registry entry."""
        return get_model_spec(self.model)

    @property
    def family(self) -> str:
        """'baseline' (the paper's small CNNs) or 'foundation' (the large pretrained backbones)."""
        return "baseline" if self.spec.family == "baseline" else "foundation"

    @property
    def paper_weights(self) -> str:
        """The pretrained weights the paper used for this row ("" when it trained from scratch)."""
        return self.spec.paper_weights if self.pretrained else ""

    @property
    def tables(self) -> tuple[str, ...]:
        """("I",), ("II",) or ("I", "II")."""
        return tuple(t.strip() for t in self.table.split(","))


_BASELINE = dict(img_size=128, crop_range=(184, 352), eval_crop=256, cache_size=256)
_FOUNDATION = dict(img_size=224, crop_range=(128, 288), eval_crop=224, cache_size=424)

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("baseline", "Baseline", "I, II", "baseline", 240, False, **_BASELINE),
        Experiment("baseline_cbam", "Baseline + CBAM", "I, II", "baseline_cbam", 240, False, **_BASELINE),
        Experiment("resnet50_scratch", "ResNet50 (not pretrained)", "II", "resnet50", 120, False, **_FOUNDATION),
        Experiment("resnet50", "ResNet50", "II", "resnet50", 30, True, **_FOUNDATION),
        Experiment("resnet101", "ResNet101", "II", "resnet101", 30, True, **_FOUNDATION),
        Experiment("convnext_large", "ConvNeXt Large", "II", "convnext_large", 30, True, **_FOUNDATION),
        Experiment("dinov2_base", "DINOv2 Base (ViT-B/14, registers)", "II", "dinov2_vitb14_reg", 15, True,
                   **_FOUNDATION),
        # ours: the ablation the paper mentions ("softmax and weighting layers ... performed worse") but does not report
        Experiment("baseline_tree", "Baseline + decision-tree layer (ours)", "ablation", "baseline", 240,
                   False, tree_output=True, **_BASELINE),
    )
}  # fmt: skip
TABLE_I: tuple[str, ...] = tuple(e.name for e in EXPERIMENTS.values() if "I" in e.tables)
TABLE_II: tuple[str, ...] = tuple(e.name for e in EXPERIMENTS.values() if "II" in e.tables)
FOUNDATION: tuple[str, ...] = tuple(e.name for e in EXPERIMENTS.values() if e.family == "foundation")
ABLATIONS: tuple[str, ...] = tuple(e.name for e in EXPERIMENTS.values() if e.table == "ablation")

PAPER_SEED = 1  # the paper's code seeds numpy, torch and the augmentation generator with 1
SPLIT_SEED = 1  # the paper's train_test_split(random_state=1); also picks a small profile's galaxies


@dataclass(frozen=True)
class Profile:
    """How a profile scales an experiment. `None` keeps the paper's value."""

    name: str
    description: str
    epoch_scale: float = 1.0  # epochs = max(min_epochs, round(paper epochs * epoch_scale))
    min_epochs: int = 1
    max_epochs: int | None = None
    img_scale: float = 1.0  # model input px = paper px * img_scale (rounded to the model's stride)
    max_images: int | None = None  # cap on galaxies used (train + validation), a fixed seeded subset
    batch_size: int | None = None
    lr_scale: float = 1.0  # a profile with ~100x fewer optimizer steps learns too little at the paper's 1e-4
    # the foundation models cost 10-100x the baseline per image: small profiles scale them further
    foundation_img_scale: float | None = None
    foundation_max_images: int | None = None
    # missing pretrained weights: train from random initialisation (labelled so) instead of stopping
    random_init_when_weights_missing: bool = False
    seeds: int = 1  # training seeds per row (1, 2, ...; seed 1 is the paper's): the spread over seeds is reported
    foundation_seeds: int | None = None  # None: as many as `seeds`
    ablation_seeds: int | None = None  # our ablation rows (not the paper's); None: as many as `seeds`

    def seeds_of(self, experiment: str) -> tuple[int, ...]:
        """The training seeds this profile runs for `experiment`: 1, 2, ... (1 is the paper's)."""
        exp = get_experiment(experiment)
        n = self.seeds
        if exp.family == "foundation" and self.foundation_seeds:
            n = self.foundation_seeds
        elif exp.table == "ablation" and self.ablation_seeds:
            n = self.ablation_seeds
        return tuple(range(PAPER_SEED, PAPER_SEED + n))


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("paper", "the paper's settings exactly: all images, all epochs, 128/224 px, batch 105, one seed "
                "(the paper's; --seeds N for more)"),
        Profile("quick", "a 2-core CPU in minutes: baseline CNNs on <= 5,000 galaxies at 32 px for 1/30 of their "
                "epochs (8), 3 seeds (our decision-tree ablation 1); foundation models on <= 150 galaxies at 32 px "
                "(DINOv2 28 px) for 2 epochs (ResNet50 from scratch 4), 1 seed; batch 32 and 3x the learning rate "
                "(3e-4), since it takes ~100x fewer optimizer steps than the paper",
                epoch_scale=1 / 30, min_epochs=2, max_epochs=8, img_scale=0.25, max_images=5000, batch_size=32,
                lr_scale=3.0, foundation_img_scale=1 / 7, foundation_max_images=150, seeds=3, foundation_seeds=1,
                ablation_seeds=1, random_init_when_weights_missing=True),
        Profile("smoke", "seconds, for tests: <= 96 galaxies, 1 epoch, 16 px (foundation models 32 px, ViT 28 px), "
                "batch 16, 2 seeds of the baseline CNNs, 1 of the foundation models",
                epoch_scale=0.0, min_epochs=1, max_epochs=1, img_scale=0.125, max_images=96, batch_size=16,
                foundation_img_scale=1 / 7, foundation_max_images=48, seeds=2, foundation_seeds=1,
                random_init_when_weights_missing=True),
    )
}  # fmt: skip


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs, resolved from an experiment, a profile and overrides.

    Saved as the run's config.json; its hash names the run folder, so a changed setting never reuses a run.
    Frozen: a changed setting is a new config (`replace`), never an edit of one already in use.
    """

    experiment: str
    profile: str
    model: str
    epochs: int
    batch_size: int
    lr: float
    min_lr: float
    seed: int  # training seed: initialisation, batch order, augmentation
    img_size: int
    crop_range: tuple[int, int]
    eval_crop: int
    cache_size: int
    # the cache stores the whole 424-px frame, so rotated crops keep the image content in their corners
    # exactly where the paper's rotate-then-crop has it
    source_crop: int = layout.FRAME
    pretrained: bool = False
    weights_file: str | None = None
    head: str = "faithful"  # or "plain"
    tree_output: bool = False
    max_images: int | None = None
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 (the paper's) | tf32 | bf16
    device: str = "auto"
    compile: bool = False
    channels_last: bool = True
    images_on: str = "auto"  # auto | device | stream: where training reads the images (data/store.py)
    tta: int = 16  # test-time views: n rotations x 2 flips
    data_dirs: list[str] = field(default_factory=list)
    world_size: int = 1
    # the split (the paper's random_state 1) and the profile's subset stay fixed whatever the training seed, so that
    # every seed trains and is scored on the same galaxies
    split_seed: int = SPLIT_SEED
    holdout: int = 0  # fully labelled galaxies held out of training and validation (data.split.holdout_split)

    # settings that change results; the rest (device, precision, ...) are recorded but not hashed
    RESULT_KEYS = ("experiment", "model", "epochs", "batch_size", "lr", "min_lr", "seed", "img_size",
                   "crop_range", "eval_crop", "cache_size", "source_crop", "pretrained", "weights_file",
                   "head", "tree_output", "max_images", "data_dirs", "split_seed", "holdout")  # fmt: skip

    def replace(self, **changes) -> RunConfig:
        """A copy with `changes` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["crop_range"] = list(self.crop_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["crop_range"] = tuple(d["crop_range"])
        return cls(**d)

    @classmethod
    def load(cls, path) -> RunConfig:
        """The config.json of a run folder."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def result_hash(self) -> str:
        d = self.to_dict()
        blob = json.dumps({k: d[k] for k in self.RESULT_KEYS}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:8]

    def run_name(self) -> str:
        return f"{self.experiment}-seed{self.seed}-{self.result_hash()}"


def _round_to(x: float, multiple: int) -> int:
    return max(multiple, int(round(x / multiple)) * multiple)


def get_experiment(name: str) -> Experiment:
    """The experiment called `name`; a UserError listing the valid names otherwise."""
    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def get_profile(name: str) -> Profile:
    """The profile called `name`; a UserError listing the valid names otherwise."""
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]


def resolve(experiment: str, profile: str = "paper", **overrides) -> RunConfig:
    """The run settings of `experiment` scaled by `profile`.

    Args:
        experiment: a row of Table I or II (see EXPERIMENTS).
        profile: paper | quick | smoke.
        **overrides: RunConfig fields that win over the profile's values; None means no override.

    Returns:
        The resolved, frozen config.
    """
    exp, prof = get_experiment(experiment), get_profile(profile)
    epochs = max(prof.min_epochs, round(exp.epochs * prof.epoch_scale))
    if prof.max_epochs is not None:
        epochs = min(epochs, prof.max_epochs)
    stride = exp.spec.input_multiple  # four 2x poolings of the baseline, 32 for the CNNs, the ViT's patch
    foundation = exp.family == "foundation"
    img_scale = prof.foundation_img_scale if foundation and prof.foundation_img_scale else prof.img_scale
    max_images = prof.foundation_max_images if foundation and prof.foundation_max_images else prof.max_images
    img_size = _round_to(exp.img_size * img_scale, stride)
    # keep the cache at the same px per output px as the paper-size setting, capped at the JPEG's own 424
    cache_size = min(layout.FRAME, math.ceil(exp.cache_size * img_size / exp.img_size))
    cfg = RunConfig(
        experiment=exp.name, profile=prof.name, model=exp.model, epochs=epochs,
        batch_size=prof.batch_size or exp.batch_size, lr=round(exp.lr * prof.lr_scale, 12), min_lr=exp.min_lr,
        seed=PAPER_SEED,
        img_size=img_size, crop_range=exp.crop_range, eval_crop=exp.eval_crop, cache_size=cache_size,
        pretrained=exp.pretrained, tree_output=exp.tree_output, max_images=max_images,
    )  # fmt: skip
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown run setting {unknown[0]!r}")
    changes = {k: (tuple(v) if k == "crop_range" else v) for k, v in overrides.items() if v is not None}
    if "data_dirs" in changes:  # str or Path, one or several: stored as absolute paths (they are in the run's hash)
        changes["data_dirs"] = [str(Path(d).expanduser().resolve()) for d in as_paths(changes["data_dirs"])]
    if "weights_file" in changes:
        changes["weights_file"] = str(Path(changes["weights_file"]).expanduser())
    return cfg.replace(**changes)
