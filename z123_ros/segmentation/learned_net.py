"""The learned segmenter's network: a small U-Net on the back-projected depth (UOIS-Net's depth seeding idea, Xie et
al. 2020, written here from scratch), with its weights as safetensors.

Input (8 channels at the network's resolution): camera-frame x, y, z in metres (0 without depth), a validity flag,
the surface normal (0 without depth) and the height above the frame's dominant plane (RANSAC, as the tabletop
segmenter fits it; 0 without a plane). Only geometry, so what it learns on simulated scenes carries over to a
real camera: colour and texture never reach it. Outputs: a foreground logit (object vs table, clutter, room) and,
per pixel, the 3D offset from its point to the centre of its object (in units of ``NetConfig.offset_scale_m``);
pixels of one object all point at one spot, so clustering the pointed-at spots separates touching objects.

The network is a dict of tensors and a functional ``forward`` (GroupNorm, no running statistics: training and
inference compute the same thing), so the weights file is exactly that dict and nothing in it can run code.
Torch is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import ModelLoadError
from z123_ros.geometry import fit_plane_ransac
from z123_ros.segmentation.learned_config import NetConfig

logger = logging.getLogger(__name__)

#: Written to the weights' metadata; a file without it is not ours.
WEIGHTS_FORMAT = "z123-learned-seg-v1"
IN_CHANNELS = 8
#: The height channel is given in units of this many metres.
HEIGHT_UNIT_M = 0.05


def subsample_stride(width: int, height: int, long_side: int) -> int:
    """Pixels between samples so that the longer side is about ``long_side`` (640x480 at 320 -> 2)."""
    return max(1, int(round(max(width, height) / long_side)))


def subsample_frame(
    depth_m: np.ndarray, intrinsics: CameraIntrinsics, long_side: int
) -> tuple[np.ndarray, CameraIntrinsics, int]:
    """``(depth of every s-th pixel, its camera, s)``: plain subsampling, no averaging, so holes and flying pixels
    reach the network as the sensor made them (an average would invent depth between surfaces)."""
    s = subsample_stride(intrinsics.width, intrinsics.height, long_side)
    off = s // 2
    small = np.ascontiguousarray(depth_m[off::s, off::s], dtype=np.float32)
    h, w = small.shape
    intr = CameraIntrinsics(
        fx=intrinsics.fx / s, fy=intrinsics.fy / s, cx=(intrinsics.cx - off) / s, cy=(intrinsics.cy - off) / s,
        width=w, height=h,
    )  # fmt: skip
    return small, intr, s


def xyz_image(depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(3, h, w) float32 camera-frame points of a depth image, 0 where the depth is missing."""
    h, w = depth_m.shape
    z = np.nan_to_num(depth_m.astype(np.float32), nan=0.0)
    u = (np.arange(w, dtype=np.float32) - intrinsics.cx) / intrinsics.fx
    v = (np.arange(h, dtype=np.float32) - intrinsics.cy) / intrinsics.fy
    return np.stack([u[None, :] * z, v[:, None] * z, z])


def plane_height(xyz: np.ndarray, distance_m: float = 0.008, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """``(height of every point above the dominant plane (h, w) float32, 0 without depth; the plane or None)``.

    The plane is RANSAC's dominant plane of the points (the tabletop segmenter's fit, without its desk-over-floor
    rule: the network sees the heights and learns what to make of them). No plane (under 10 % inliers): heights 0.
    """
    valid = xyz[2] > 0
    height = np.zeros(valid.shape, np.float32)
    if valid.sum() < 50:
        return height, None
    fit = fit_plane_ransac(xyz[:, valid].T.astype(np.float64), distance_m, seed=seed, min_inlier_fraction=0.1)
    if fit is None:
        return height, None
    n, d = fit.plane[:3], fit.plane[3]
    height[valid] = np.einsum("k,kn->n", n, xyz[:, valid]) + d
    return height, fit.plane


def level_channels(cfg: NetConfig) -> list[int]:
    """Channels of each level, top (input resolution) first."""
    return [min(cfg.base_channels * 2**i, cfg.max_channels) for i in range(cfg.levels + 1)]


def param_shapes(cfg: NetConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the network (convolutions ``*.w``/``*.b``, GroupNorms ``*.g``/``*.beta``)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int = 3, norm: bool = True) -> None:
        shapes[f"{name}.w"] = (cout, cin, k, k)
        shapes[f"{name}.b"] = (cout,)
        if norm:
            shapes[f"{name}.g"] = (cout,)
            shapes[f"{name}.beta"] = (cout,)

    ch = level_channels(cfg)
    for i, c in enumerate(ch):
        conv(f"enc{i}.a", IN_CHANNELS if i == 0 else ch[i - 1], c)  # stride 2 from level 1 on
        conv(f"enc{i}.b", c, c)
    conv("mid", ch[-1], ch[-1])  # dilated: widens the receptive field at the coarsest level
    for i in range(cfg.levels - 1, -1, -1):
        conv(f"dec{i}.a", ch[i + 1] + ch[i], ch[i])
        conv(f"dec{i}.b", ch[i], ch[i])
    conv("head_fg", ch[0], 1, k=1, norm=False)
    conv("head_offset", ch[0], 3, k=1, norm=False)
    return shapes


def init_params(cfg: NetConfig, seed: int = 0) -> dict:
    """Freshly initialised float32 tensors (He-normal convolutions, unit GroupNorm), seeded."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith(".w"):
            fan_in = shape[1] * shape[2] * shape[3]
            params[name] = torch.randn(shape, generator=gen) * float(np.sqrt(2.0 / fan_in))
        elif name.endswith(".g"):
            params[name] = torch.ones(shape)
        else:
            params[name] = torch.zeros(shape)
    params["head_fg.w"] *= 0.1
    params["head_fg.b"] += -2.2  # start at the prior (about 1 pixel in 10 is an object) instead of learning it first
    params["head_offset.w"] *= 0.1
    return params


def input_features(xyz, height):
    """(B, 3, H, W) camera-frame points (0 = no depth) and (B, 1, H, W) heights above the dominant plane -> (B, 8, H,
    W) network input: xyz, validity, normals, height."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    valid = (xyz[:, 2:3] > 0).to(xyz.dtype)
    pad = F.pad(xyz, (1, 1, 1, 1))
    pv = F.pad(valid, (1, 1, 1, 1))
    dx = pad[:, :, 1:-1, 2:] - pad[:, :, 1:-1, :-2]
    dy = pad[:, :, 2:, 1:-1] - pad[:, :, :-2, 1:-1]
    ok = valid * pv[:, :, 1:-1, 2:] * pv[:, :, 1:-1, :-2] * pv[:, :, 2:, 1:-1] * pv[:, :, :-2, 1:-1]
    n = torch.cross(dx, dy, dim=1)
    n = n / (n.norm(dim=1, keepdim=True) + 1e-9)
    n = torch.where((n * xyz).sum(dim=1, keepdim=True) > 0, -n, n)  # facing the camera
    # Heights in units of 5 cm: the most telling channel gets a scale near the others' (metres, unit normals).
    return torch.cat([xyz, valid, n * ok, height * valid / HEIGHT_UNIT_M], dim=1)


def _conv(p: dict, name: str, x, stride: int = 1, dilation: int = 1, norm: bool = True):
    import torch.nn.functional as F  # noqa: N812

    w = p[f"{name}.w"]
    pad = dilation * (w.shape[-1] // 2)
    x = F.conv2d(x, w, p[f"{name}.b"], stride=stride, padding=pad, dilation=dilation)
    if not norm:
        return x
    groups = max(1, w.shape[0] // 8)  # 8 channels per group: works for every level width
    return F.relu(F.group_norm(x, groups, p[f"{name}.g"], p[f"{name}.beta"]))


def forward(params: dict, xyz, height, cfg: NetConfig):
    """(B, 3, H, W) points and (B, 1, H, W) heights, H and W multiples of ``2**levels`` -> (foreground logits (B, 1,
    H, W), offsets (B, 3, H, W) in units of ``offset_scale_m``)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    x = input_features(xyz, height)
    skips = []
    for i in range(cfg.levels + 1):
        x = _conv(params, f"enc{i}.a", x, stride=1 if i == 0 else 2)
        x = _conv(params, f"enc{i}.b", x)
        skips.append(x)
    x = x + _conv(params, "mid", x, dilation=2)
    for i in range(cfg.levels - 1, -1, -1):
        x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
        x = _conv(params, f"dec{i}.a", torch.cat([x, skips[i]], dim=1))
        x = _conv(params, f"dec{i}.b", x)
    return _conv(params, "head_fg", x, norm=False), _conv(params, "head_offset", x, norm=False)


def save_weights(path: str | os.PathLike, params: dict, cfg: NetConfig, extra: dict | None = None) -> None:
    """Write the tensors as safetensors with the NetConfig (and ``extra``) in its metadata; one rename at the end."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": WEIGHTS_FORMAT, "net_config": json.dumps(dataclasses.asdict(cfg))}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().contiguous().float() for k, v in params.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_weights(path: str | os.PathLike) -> tuple[dict, NetConfig, dict]:
    """``(tensors, NetConfig, other metadata)`` of a weights file written by :func:`save_weights`.

    Only safetensors is read (a pickle checkpoint can run code when loaded). ModelLoadError, one line, for a missing,
    unreadable or foreign file, or one whose tensors do not match its own config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"learned segmenter weights not found: {path} (train them with `z123 train-segmenter`)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"learned segmenter weights {path} are not a readable safetensors file: {exc}") from exc
    if meta.get("format") != WEIGHTS_FORMAT:
        raise ModelLoadError(f"{path} is not a z123 learned segmenter weights file (format {meta.get('format')!r})")
    try:
        cfg = NetConfig(**json.loads(meta["net_config"]))
        cfg.check()
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"learned segmenter weights {path}: bad net_config metadata ({exc})") from exc
    expected = param_shapes(cfg)
    wrong = [k for k, s in expected.items() if k not in tensors or tuple(tensors[k].shape) != s]
    if wrong or len(tensors) != len(expected):
        raise ModelLoadError(f"learned segmenter weights {path} do not match their config (first bad tensor: "
                             f"{(wrong or sorted(set(tensors) - set(expected)))[0]})")  # fmt: skip
    other = {k: json.loads(v) for k, v in meta.items() if k not in ("format", "net_config")}
    return {k: v.float() for k, v in tensors.items()}, cfg, other
