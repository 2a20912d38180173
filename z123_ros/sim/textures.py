"""Textures for the simulator, applied as a per-pixel colour pass over a TinyRenderer frame.

TinyRenderer shades each body's flat colour; this module replaces that colour per pixel by a texture looked up at the
pixel's surface point in the body's own frame (tri-planar mapping: the texture is projected along the axis the surface
faces most), keeping the renderer's shading (the ratio of the rendered luminance to the flat colour's luminance).
That is exact per pixel, needs no UVs for the scans, and costs a few milliseconds per frame.

Texture images: procedural packaging (several colours, label panels, printed text, stripes, noise) drawn with OpenCV,
real photographs bundled in scikit-image's wheel (astronaut, coffee, chelsea, rocket, ...), and surface textures for
clutter and background (paper with text, brick wall, carpet from scikit-image's grass / gravel samples, wood, a
keyboard's key grid).
"""

from __future__ import annotations

import functools
import hashlib
import logging

import cv2
import numpy as np
import skimage.data

from z123_ros.errors import ConfigError

logger = logging.getLogger(__name__)

#: Texture modes of ``SceneConfig.texture``.
TEXTURE_MODES = ("flat", "procedural", "photo")

#: Photographs bundled in scikit-image (no download), used as printed packaging.
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "logo", "colorwheel")

_SIZE = 256  # texture images are _SIZE x _SIZE RGB


def _rng(*keys: object) -> np.random.Generator:
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _random_colour(rng: np.random.Generator, lo: int = 20, hi: int = 240) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(lo, hi, 3))  # type: ignore[return-value]


@functools.lru_cache(maxsize=16)
def _skimage(name: str) -> np.ndarray:
    """A scikit-image sample as (_SIZE, _SIZE, 3) uint8 (grey ones replicated)."""
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    return cv2.resize(np.ascontiguousarray(image), (_SIZE, _SIZE), interpolation=cv2.INTER_AREA)


def packaging_texture(name: str, seed: int, base_rgb: tuple[float, float, float]) -> np.ndarray:
    """Procedural packaging: the object's base colour, 2-5 coloured panels, printed text lines, stripes and noise."""
    rng = _rng("packaging", name, seed)
    base = tuple(int(255 * c) for c in base_rgb)
    image = np.empty((_SIZE, _SIZE, 3), np.uint8)
    image[:] = base
    if rng.uniform() < 0.5:  # stripes across
        period = int(rng.integers(12, 64))
        colour = _random_colour(rng)
        for y in range(0, _SIZE, period):
            cv2.rectangle(image, (0, y), (_SIZE, y + period // 3), colour, -1)
    for _ in range(int(rng.integers(2, 6))):  # label panels
        x0, y0 = (int(v) for v in rng.integers(0, _SIZE - 40, 2))
        w, h = (int(v) for v in rng.integers(30, 160, 2))
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), _random_colour(rng), -1)
    for _ in range(int(rng.integers(3, 9))):  # printed text
        x0, y0 = int(rng.integers(0, 120)), int(rng.integers(20, _SIZE))
        word = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 9))))
        cv2.putText(image, word, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.4, 1.2)),
                    _random_colour(rng, 0, 255), int(rng.integers(1, 3)), cv2.LINE_AA)  # fmt: skip
    noise = rng.normal(0.0, 6.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def photo_texture(name: str, seed: int) -> np.ndarray:
    """A real photograph (scikit-image's bundled samples) as a printed label, with a coloured border."""
    rng = _rng("photo", name, seed)
    image = _skimage(PHOTO_NAMES[int(rng.integers(len(PHOTO_NAMES)))]).copy()
    if rng.uniform() < 0.5:
        cv2.rectangle(image, (0, 0), (_SIZE - 1, _SIZE - 1), _random_colour(rng), int(rng.integers(8, 40)))
    return image


def surface_texture(kind: str, seed: int) -> np.ndarray:
    """Textures of clutter and background: paper, keyboard, cable, wall, carpet, wood."""
    rng = _rng("surface", kind, seed)
    if kind == "paper":
        image = np.full((_SIZE, _SIZE, 3), 235, np.uint8)
        text = _skimage("page" if rng.uniform() < 0.5 else "text")
        image = np.minimum(image, text)
    elif kind == "keyboard":
        image = np.full((_SIZE, _SIZE, 3), 40, np.uint8)
        for y in range(4, _SIZE, 32):
            for x in range(4, _SIZE, 32):
                cv2.rectangle(image, (x, y), (x + 26, y + 26), (70, 70, 75), -1)
                cv2.putText(image, chr(int(rng.integers(65, 91))), (x + 7, y + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                            (200, 200, 200), 1, cv2.LINE_AA)  # fmt: skip
    elif kind == "cable":
        image = np.full((_SIZE, _SIZE, 3), _random_colour(rng, 5, 40), np.uint8)  # black or dark grey insulation
    elif kind == "wall":
        tint = np.array(_random_colour(rng, 150, 240), np.float32) / 255.0
        if rng.uniform() < 0.4:
            image = (_skimage("brick").astype(np.float32) * 0.35 + 150.0) * tint
        else:  # painted plaster
            image = tint * 220.0 + rng.normal(0, 4.0, (_SIZE, _SIZE, 3))
    elif kind == "carpet":
        tint = np.array(_random_colour(rng, 40, 200), np.float32) / 255.0
        image = _skimage("grass" if rng.uniform() < 0.5 else "gravel").astype(np.float32) * tint
    elif kind == "wood":
        y = np.arange(_SIZE, dtype=np.float32)[:, None]
        grain = 0.5 + 0.5 * np.sin(y / rng.uniform(3, 8) + 2.0 * np.sin(np.arange(_SIZE)[None, :] / 40.0))
        image = np.stack([110 + 60 * grain, 70 + 40 * grain, 35 + 25 * grain], axis=-1)
    else:
        raise ConfigError(f"unknown surface texture {kind!r}")
    return np.clip(image, 0, 255).astype(np.uint8)


def object_texture(mode: str, name: str, seed: int, base_rgb: tuple[float, float, float]) -> np.ndarray | None:
    """The texture image of a catalogue object for ``SceneConfig.texture``; None for flat colour."""
    if mode not in TEXTURE_MODES:
        raise ConfigError(f"texture must be one of {TEXTURE_MODES}, got {mode!r}")
    if mode == "flat":
        return None
    if mode == "photo" and _rng("mode", name, seed).uniform() < 0.7:
        return photo_texture(name, seed)
    return packaging_texture(name, seed, base_rgb)


def triplanar_lookup(points: np.ndarray, normals: np.ndarray, image: np.ndarray, metres_per_image: float) -> np.ndarray:
    """(N, 3) uint8 colours of (N, 3) body-frame points with normals: the texture tiled every ``metres_per_image``.

    Each point is projected along the body axis its normal is closest to, so a box's faces each carry a flat label.
    """
    axis = np.argmax(np.abs(normals), axis=1)
    s = np.where(axis == 0, points[:, 1], points[:, 0])
    t = np.where(axis == 2, points[:, 1], points[:, 2])
    size = image.shape[0]
    col = np.floor(s / metres_per_image * size).astype(np.int64) % size
    row = (size - 1 - np.floor(t / metres_per_image * size).astype(np.int64)) % size
    return image[row, col]


def shade_texture(rendered: np.ndarray, flat_rgb: tuple[float, float, float], texture_rgb: np.ndarray) -> np.ndarray:
    """Texture colours under the renderer's lighting: texture * (rendered luminance / flat colour luminance)."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    flat_lum = max(float(np.dot(np.asarray(flat_rgb, np.float32) * 255.0, weights)), 1.0)
    shade = (rendered.astype(np.float32) @ weights) / flat_lum
    return np.clip(texture_rgb.astype(np.float32) * shade[:, None], 0, 255).astype(np.uint8)
