"""Settings of the learned depth-only segmenter (``segmentation.method: learned``): the network's shape and input, and
how ``z123 train-segmenter`` makes its training data and trains it. Torch-free, so ``z123 --help`` stays light."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from z123_ros.errors import ConfigError

#: The weights shipped with the package (see README, "Segmentation"): safetensors, with a JSON sidecar of the
#: configs and the training command.
PACKAGED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "learned_seg.safetensors"


@dataclass
class NetConfig:
    """Shape and input of the network. Stored in the weights' metadata: a file always loads with its own shape."""

    base_channels: int = 8
    """Channels of the first level; each level below doubles them up to ``max_channels``."""
    max_channels: int = 96
    """Upper bound of the channels of any level."""
    levels: int = 4
    """Number of 2x downsamplings (receptive field: ~2^levels * 5 pixels at the input resolution)."""
    input_long_side: int = 160
    """Frames are subsampled (every s-th pixel, no averaging: holes and flying pixels stay as the sensor made them) so
    that their longer side is about this many pixels; 640x480 -> 160x120, the tabletop segmenter's coarse grid
    (stride 4). Masks come back to full resolution along depth edges."""
    offset_scale_m: float = 0.1
    """The centre-offset head predicts offsets in units of this many metres (keeps its outputs near 1)."""

    def check(self) -> None:
        if not 4 <= self.base_channels <= self.max_channels <= 512:
            raise ConfigError(f"need 4 <= base_channels <= max_channels <= 512, got {self.base_channels}, "
                              f"{self.max_channels}")  # fmt: skip
        if not 1 <= self.levels <= 6:
            raise ConfigError(f"levels must be in 1..6, got {self.levels}")
        if not 32 <= self.input_long_side <= 2048:
            raise ConfigError(f"input_long_side must be in 32..2048, got {self.input_long_side}")
        if not self.offset_scale_m > 0:
            raise ConfigError(f"offset_scale_m must be positive, got {self.offset_scale_m}")


@dataclass
class ClusterConfig:
    """Turning the network's outputs into instances (inference only: changing these needs no retraining)."""

    foreground_threshold: float = 0.5
    """A pixel is an object pixel when the foreground probability exceeds this."""
    cluster_radius_m: float = 0.04
    """Neighbouring object pixels whose predicted centres are farther apart than this belong to different objects."""
    link_distance_m: float = 0.012
    """Neighbouring object pixels closer than this in 3D lie on one surface (the tabletop's cluster tolerance)..."""
    link_spacing: float = 2.5
    """...or closer than this many grid spacings at their depth (far or slanted surfaces)."""
    min_object_pixels: int = 12
    """Pieces with fewer pixels at the network's resolution join a neighbouring object or are dropped."""
    min_object_area_px: int = 200
    """Objects whose full-resolution mask is smaller are dropped (as the tabletop segmenter's)."""
    max_objects: int = 32
    """At most this many objects per frame (the largest win)."""


@dataclass
class TrainSegmenterConfig:
    """``z123 train-segmenter``: simulated training data (generated once into a cache folder, seeded) and training.

    Scenes are drawn with domain randomisation over everything depth shows: sensor preset (ideal, structured
    light, active stereo), camera range 0.2-1.5 m, elevation 10-80 deg, field of view 40-90 deg, 1-7 objects,
    touching or occluding layouts, objects cut by the border, flat clutter and rooms around the table. Texture does
    not matter to a depth-only network, so scenes are rendered flat (faster). Seeds are far from the benchmark's
    (bench/bench_segmentation.py, ``z123 eval --conditions``), and the real frames are never used.
    """

    out_dir: str = "learned_seg_run"
    """Run folder: checkpoints/step-NNNNNN/ (safetensors + JSON), best/ (chosen on the simulated validation set),
    history.json (loss and validation curve)."""
    data_dir: str = ""
    """Cache folder of the generated scenes; empty = ~/.cache/z123_ros/learned_seg_data. A scene already there (same
    seed and generator version) is not rendered again."""
    seed: int = 0
    """Seed of the scene draws, the initial weights and the batch order: the same seed reproduces the run."""
    train_scenes: int = 640
    """Simulated scenes to train on."""
    val_scenes: int = 48
    """Held-out simulated scenes (other seeds) the best checkpoint is picked on."""
    data_long_side: int = 320
    """Scenes are stored subsampled to this longer side (the network's ``input_long_side`` subsamples them again)."""
    render_vga_fraction: float = 0.25
    """Fraction of scenes rendered at 640x480 and subsampled (the rest are rendered at 320x240 directly: faster)."""
    steps: int = 550
    """Optimiser steps (550: ~40 min on 2 shared CPU cores; the shipped weights' run)."""
    batch_size: int = 4
    """Crops per step."""
    crop_height: int = 96
    """Training crop height at the network's resolution (the network is fully convolutional; 128x160 would hold a
    whole 160x120 frame, zero-padded: no depth, background)."""
    crop_width: int = 128
    """Training crop width."""
    learning_rate: float = 3e-3
    """Peak AdamW learning rate (cosine decay to 5 % after a short warm-up)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    offset_weight: float = 1.0
    """Weight of the centre-offset loss beside the foreground loss."""
    eval_every: int = 110
    """Steps between validation passes (and checkpoints)."""
    threads: int = 2
    """Torch CPU threads."""
    net: NetConfig = dataclasses.field(default_factory=NetConfig)
    """The network (stored with the weights)."""

    def check(self) -> None:
        self.net.check()
        if self.train_scenes < 1 or self.val_scenes < 0:
            raise ConfigError(f"need train_scenes >= 1 and val_scenes >= 0, got {self.train_scenes}, {self.val_scenes}")
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1 or self.threads < 1:
            raise ConfigError("steps, batch_size, eval_every and threads must be >= 1")
        mult = 2**self.net.levels
        if self.crop_height % mult or self.crop_width % mult or self.crop_height < mult or self.crop_width < mult:
            raise ConfigError(f"crop size {self.crop_width}x{self.crop_height} must be a positive multiple of {mult}")
        if not self.learning_rate > 0 or self.weight_decay < 0 or self.offset_weight < 0:
            raise ConfigError("learning_rate must be positive; weight_decay and offset_weight >= 0")
        if self.data_long_side < self.net.input_long_side:
            raise ConfigError(f"data_long_side ({self.data_long_side}) must be >= net.input_long_side")
        if not 0 <= self.render_vga_fraction <= 1:
            raise ConfigError(f"render_vga_fraction must be in [0, 1], got {self.render_vga_fraction}")

    def data_folder(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else Path.home() / ".cache/z123_ros/learned_seg_data"
