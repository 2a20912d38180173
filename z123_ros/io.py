"""File conventions shared by every ``z123`` command: RGB, mask, depth and CAMERA.json.

- RGB: any 8-bit colour image OpenCV reads (PNG, JPEG); returned as (H, W, 3) uint8 **RGB**.
- MASK: 8-bit single-channel PNG, non-zero = object; returned as (H, W) bool.
- DEPTH: 16-bit PNG in millimetres (or the unit CAMERA.json's ``depth_unit`` names) or a ``.npy`` of float metres;
  returned as (H, W) float32 metres with invalid pixels (0, NaN, inf) set to NaN.
- CAMERA.json: ``{"K": 3x3 row-major list, "width": W, "height": H, "T_cam_from_world": 4x4 (optional, world +z up),
  "depth_unit": "mm" | "m" (optional, default "mm" for PNG)}``. Camera convention: OpenCV (see z123_ros.camera).

Errors are :class:`~z123_ros.errors.InputError` naming the file and what was wrong. Nothing here writes partial output.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import json
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from z123_ros.camera import CameraIntrinsics, check_rigid
from z123_ros.errors import CameraError, InputError


@dataclass
class CameraModel:
    """What CAMERA.json holds."""

    intrinsics: CameraIntrinsics
    #: 4x4 world -> camera transform, world +z up (e.g. the table frame); None when unknown.
    T_cam_from_world: np.ndarray | None = None
    #: Unit of 16-bit depth PNGs: "mm" or "m".
    depth_unit: str = "mm"

    def to_json(self) -> dict:
        intr = self.intrinsics
        out = {"K": intr.K.ravel().tolist(), "width": intr.width, "height": intr.height}
        if self.T_cam_from_world is not None:
            out["T_cam_from_world"] = np.asarray(self.T_cam_from_world).tolist()
        out["depth_unit"] = self.depth_unit
        return out


def _require_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    return path


def load_camera(path: str | os.PathLike) -> CameraModel:
    path = _require_file(path, "camera")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"camera file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"camera file {path} must hold a JSON object")
    missing = [k for k in ("K", "width", "height") if k not in data]
    if missing:
        raise InputError(f"camera file {path} lacks {', '.join(missing)}")
    try:
        intr = CameraIntrinsics.from_K(np.asarray(data["K"], dtype=np.float64), int(data["width"]), int(data["height"]))
        T = data.get("T_cam_from_world")
        T = None if T is None else check_rigid(np.asarray(T, dtype=np.float64), "T_cam_from_world")
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CameraError):
            raise CameraError(f"camera file {path}: {exc}") from exc
        raise InputError(f"camera file {path}: bad value: {exc}") from exc
    unit = data.get("depth_unit", "mm")
    if unit not in ("mm", "m"):
        raise InputError(f"camera file {path}: depth_unit must be 'mm' or 'm', got {unit!r}")
    return CameraModel(intr, T, unit)


def save_camera(path: str | os.PathLike, camera: CameraModel) -> None:
    Path(path).write_text(json.dumps(camera.to_json(), indent=2))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(data: bytes, path: Path) -> None:
    """Raise InputError for a truncated PNG or one with a corrupt chunk (CRC mismatch).

    Checked here, before OpenCV decodes it, because libpng prints its own complaint to stderr (which no Python
    setting silences) before OpenCV returns nothing: a bad file is then one error line, the z123 one.
    """
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        chunk_type = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            break
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            name = chunk_type.decode("ascii", "replace")
            raise InputError(f"cannot decode image {path}: corrupt PNG (chunk {name} fails its checksum)")
        if chunk_type == b"IEND":
            return
        pos = end
    raise InputError(f"cannot decode image {path}: truncated PNG (it ends before its IEND chunk)")


def _imread(path: Path, flags: int) -> np.ndarray:
    raw = path.read_bytes()
    if raw.startswith(_PNG_SIGNATURE):
        check_png(raw, path)
    # OpenCV logs its own warning for undecodable input before returning None; the InputError below says it once.
    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    data = np.frombuffer(raw, dtype=np.uint8)
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise InputError(f"cannot decode image {path}: not a readable PNG/JPEG or the file is truncated")
    return img


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    img = _imread(_require_file(path, "RGB"), cv2.IMREAD_UNCHANGED)
    if img.dtype != np.uint8:
        raise InputError(f"RGB image {path} must be 8-bit, got {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img[:, :, ::-1])


def save_rgb(path: str | os.PathLike, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])):
        raise InputError(f"cannot write image {path}")


def load_mask(path: str | os.PathLike) -> np.ndarray:
    img = _imread(_require_file(path, "mask"), cv2.IMREAD_UNCHANGED)
    if img.ndim == 3:
        img = img.max(axis=2)
    return img > 0


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.asarray(mask, dtype=np.uint8) * 255):
        raise InputError(f"cannot write mask {path}")


def load_depth(path: str | os.PathLike, unit: str = "mm") -> np.ndarray:
    """Depth in metres, float32, invalid pixels NaN."""
    path = _require_file(path, "depth")
    if path.suffix.lower() == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read depth array {path}: {exc}") from exc
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
            raise InputError(f"depth array {path} must be a 2-D float array in metres, got {depth.dtype} {depth.shape}")
        depth = depth.astype(np.float32)
    else:
        raw = _imread(path, cv2.IMREAD_UNCHANGED)
        if raw.ndim != 2 or raw.dtype != np.uint16:
            raise InputError(f"depth PNG {path} must be single-channel 16-bit, got {raw.dtype} with shape {raw.shape}")
        depth = raw.astype(np.float32) * (1e-3 if unit == "mm" else 1.0)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def save_depth_png(path: str | os.PathLike, depth_m: np.ndarray) -> None:
    """16-bit PNG in millimetres; NaN -> 0."""
    mm = np.nan_to_num(np.asarray(depth_m, dtype=np.float64) * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
    if not cv2.imwrite(str(path), np.clip(np.round(mm), 0, 65535).astype(np.uint16)):
        raise InputError(f"cannot write depth {path}")


def check_frame(
    rgb: np.ndarray, intrinsics: CameraIntrinsics, depth_m: np.ndarray | None = None, mask: np.ndarray | None = None
) -> None:
    """Raise InputError unless the images agree with each other and with the camera."""
    h, w = intrinsics.height, intrinsics.width
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"RGB must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    if rgb.shape[:2] != (h, w):
        raise InputError(f"RGB is {rgb.shape[1]}x{rgb.shape[0]} but the camera says {w}x{h}")
    if depth_m is not None and depth_m.shape != (h, w):
        raise InputError(f"depth is {depth_m.shape[1]}x{depth_m.shape[0]} but the camera says {w}x{h}")
    if mask is not None and mask.shape != (h, w):
        raise InputError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the camera says {w}x{h}")


_STAGING = ".z123-staging-"
_OLD = ".z123-old-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False  # this filesystem or kernel cannot swap: the caller falls back to two renames
    raise OSError(err, os.strerror(err), str(b))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(out: str | os.PathLike) -> None:
    """Remove the staging folders of ``out`` left by killed runs; put back an old ``out`` a killed swap had moved."""
    out = Path(out)
    if not out.parent.is_dir():
        return
    olds = []
    for path in out.parent.glob(f".{glob_escape(out.name)}.z123-*"):
        pid_text = path.name.rsplit("-", 2)[-2] if path.name.count("-") >= 2 else ""
        if not pid_text.isdigit() or _pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue  # not ours, or a run still in progress
        if _OLD in path.name:
            olds.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    for old in sorted(olds):
        if not out.exists():
            old.rename(out)  # the fallback swap was killed between its two renames: the old output is whole
        else:
            shutil.rmtree(old, ignore_errors=True)


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def new_staging(out: str | os.PathLike, owned: Sequence[str] = ("*",)) -> Path:
    """A fresh, empty staging folder beside ``out`` (same filesystem, so the swap is a rename); stale ones go first.

    ``owned``: glob patterns of what the command writes; ("*",) = everything in ``out`` is the command's (folders
    that are its own by construction). Other files in an existing ``out`` are the user's: :func:`staged_output`
    carries them over into the new folder. A sub-folder it does not own is refused (InputError) rather than
    copied or dropped, so a mistyped ``--out`` never costs anyone a folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder")
    folders = [p.name for p in _foreign(out, owned) if p.is_dir() and not p.is_symlink()]
    if folders:
        raise InputError(
            f"output folder {out} holds a folder this command does not write ({sorted(folders)[0]!r}): "
            "choose a new or empty folder"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(out)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{_STAGING}{os.getpid()}-", dir=out.parent))
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the output folder is an ordinary one
    except OSError as exc:
        raise InputError(f"cannot write the output folder {out}: {exc.strerror or exc} ({exc.filename})") from exc
    return staging


def _foreign(out: Path, owned: Sequence[str]) -> list[Path]:
    if not out.is_dir():
        return []
    return [p for p in out.iterdir() if not any(fnmatch.fnmatch(p.name, g) for g in owned)]


def carry_foreign_files(out: Path, staging: Path, owned: Sequence[str]) -> None:
    """Hard-link (or copy) the files of ``out`` that the command does not own into ``staging``, so the swap keeps
    them; the command's own old outputs are not carried (the new run's replace them, or they are gone)."""
    for path in _foreign(out, owned):
        target = staging / path.name
        if target.exists() or path.is_dir():
            continue
        try:
            os.link(path, target, follow_symlinks=False)
        except OSError:
            shutil.copy2(path, target, follow_symlinks=False)


def replace_folder(staging: str | os.PathLike, out: str | os.PathLike) -> None:
    """Make the complete folder ``staging`` become ``out`` in one rename; the old ``out`` stays whole until then.

    With an existing ``out`` the two are swapped atomically (renameat2 RENAME_EXCHANGE) and the old one deleted;
    where the filesystem cannot swap, ``out`` is first renamed aside (a run killed in between leaves it whole under
    that name, and :func:`clean_stale_staging` puts it back)."""
    staging, out = Path(staging), Path(out)
    try:
        if not out.exists():
            staging.rename(out)
            return
        if not _exchange(staging, out):
            aside = Path(tempfile.mkdtemp(prefix=f".{out.name}{_OLD}{os.getpid()}-", dir=out.parent))
            out.replace(aside)  # onto the empty folder mkdtemp reserved
            staging.rename(out)
            staging = aside
    except OSError as exc:
        raise InputError(f"cannot replace the output folder {out}: {exc.strerror or exc}") from exc
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, owned: Sequence[str] = ("*",)) -> Iterator[Path]:
    """Write a command's outputs into a staging folder beside ``out``, then swap it in as a whole.

    Yields the staging folder (``owned``: see :func:`new_staging`). On success it replaces ``out`` with one
    rename (:func:`replace_folder`); on any error, or if the process is killed, ``out`` is untouched (the old
    complete folder, or none) and the staging folder is removed (by the next run when killed).
    """
    out = Path(out)
    staging = new_staging(out, owned)
    try:
        yield staging
        carry_foreign_files(out, staging, owned)
        replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
