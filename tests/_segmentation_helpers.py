"""Shared fixtures of the segmentation tests: cached renders of the simulated tabletop and a tiny analytic scene."""

from __future__ import annotations

import functools

import numpy as np

from z123_ros.camera import CameraIntrinsics, invert, look_at


@functools.lru_cache(maxsize=32)
def sim_scene(
    seed: int,
    num_objects: int = 3,
    touching: bool = False,
    height_m: float = 0.45,
    azimuth_deg: float | None = 0.0,
    distance_m: float = 0.55,
    noise_m: float = 0.0,
):
    """A rendered tabletop scene of YCB scans (z123_ros.sim), cached for the test session (renders take ~1 s)."""
    from z123_ros.sim import SceneConfig, render_tabletop_scene

    return render_tabletop_scene(
        SceneConfig(
            seed=seed,
            num_objects=num_objects,
            touching=touching,
            camera_height_m=height_m,
            camera_azimuth_deg=azimuth_deg,
            camera_distance_m=distance_m,
            depth_noise_m=noise_m,
        )
    )


def box_scene(
    boxes: list[tuple[tuple[float, float, float], tuple[float, float, float], tuple[int, int, int]]],
    width: int = 320,
    height: int = 240,
    eye: tuple[float, float, float] = (0.5, 0.0, 0.5),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, CameraIntrinsics, np.ndarray]:
    """Ray-cast axis-aligned boxes standing on an infinite table (z = 0) with a pinhole camera at ``eye`` looking
    at the origin. ``boxes`` = [(centre (x, y, bottom z), size (x, y, z), rgb colour)].

    Returns ``(rgb, depth_m, ids, intrinsics, T_cam_from_world)``.
    """
    intr = CameraIntrinsics.from_fov(60.0, width, height)
    T_world_from_cam = look_at(np.array(eye), np.zeros(3))
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays_cam = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], axis=-1)
    R, o = T_world_from_cam[:3, :3], T_world_from_cam[:3, 3]
    dirs = rays_cam @ R.T  # world direction per pixel, with camera-frame z = 1 (so t is the z-depth)
    t_best = np.where(dirs[..., 2] < 0, -o[2] / np.where(dirs[..., 2] < 0, dirs[..., 2], -1), np.inf)
    ids = np.zeros((height, width), dtype=np.int32)
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[:] = (200, 170, 130)  # table
    colours = {}
    for k, (centre, size, colour) in enumerate(boxes, start=1):
        # centre[2] is the height of the box's bottom face (0 = standing on the table).
        lo = np.array([centre[0] - size[0] / 2, centre[1] - size[1] / 2, centre[2]])
        hi = np.array([centre[0] + size[0] / 2, centre[1] + size[1] / 2, centre[2] + size[2]])
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (lo - o) / dirs
            t2 = (hi - o) / dirs
        t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (t_near <= t_far) & (t_near > 0) & (t_near < t_best)
        t_best = np.where(hit, t_near, t_best)
        ids[hit] = k
        colours[k] = colour
    for k, colour in colours.items():
        rgb[ids == k] = colour
    depth = np.where(np.isfinite(t_best), t_best, np.nan).astype(np.float32)
    ids[~np.isfinite(depth)] = 0
    return rgb, depth, ids, intr, invert(T_world_from_cam)
