"""Helpers of the oracle tests and benchmark rows: primitives on the table and an oracle for a rendered view."""

from __future__ import annotations

import igl
import numpy as np
import trimesh

from tests._reconstruction_helpers import ObjectView
from z123_ros.camera import invert, transform_points
from z123_ros.novel_views.oracle import OracleZero123
from z123_ros.reconstruction import ReconstructionConfig, ReconstructionInput
from z123_ros.sim import SceneConfig
from z123_ros.sim.objects import object_colour
from z123_ros.sim.renderer import TinyRenderer
from z123_ros.sim.scene import camera_pose

#: Primitive name -> trimesh factory (metres, resting on z = 0), yawed so no face is square to the camera.
PRIMITIVES = {
    "box": lambda: trimesh.creation.box((0.10, 0.06, 0.12)),
    "cylinder": lambda: trimesh.creation.cylinder(radius=0.035, height=0.11, sections=48),
}
PRIMITIVE_COLOURS = {"box": (0.8, 0.25, 0.2), "cylinder": (0.2, 0.4, 0.75)}


def primitive_mesh(kind: str, yaw_deg: float = 30.0) -> trimesh.Trimesh:
    mesh = PRIMITIVES[kind]()
    mesh.apply_transform(trimesh.transformations.rotation_matrix(np.radians(yaw_deg), (0, 0, 1)))
    mesh.apply_translation((0.0, 0.0, -mesh.bounds[0][2]))
    return mesh


def render_primitive_view(kind: str, width: int = 160, height: int = 120) -> ObjectView:
    """A primitive alone on the table, seen by the simulator's default head camera, as a reconstruction input."""
    cfg = SceneConfig(width=width, height=height)
    T_cam_from_world = camera_pose(cfg)
    mesh = primitive_mesh(kind)
    with TinyRenderer() as r:
        r.add_table()
        body = r.add_mesh(mesh.vertices, mesh.faces, PRIMITIVE_COLOURS[kind])
        buf = r.render(cfg.intrinsics(), T_cam_from_world, light=cfg.light)
    inp = ReconstructionInput(
        rgb=buf.rgb,
        mask=buf.body_ids == body,
        intrinsics=cfg.intrinsics(),
        depth_m=buf.depth_m,
        T_cam_from_world=T_cam_from_world,
    )
    return ObjectView(kind, inp, mesh, T_cam_from_world)


def oracle_for(view: ObjectView, image_size: int = 64, **wrong) -> OracleZero123:
    """An oracle of ``view``'s true object and camera (``wrong``: flip_azimuth / flip_polar / radius_scale)."""
    colour = PRIMITIVE_COLOURS.get(view.name) or object_colour(view.name)
    return OracleZero123(
        view.gt_mesh_world, view.T_cam_from_world, view.inp.intrinsics, image_size=image_size, colour=colour, **wrong
    )


def oracle_config(grid: int = 32, render: int = 16, samples: int = 32, fit_steps: int = 50) -> ReconstructionConfig:
    """A small multiview/SJC configuration for CPU tests."""
    cfg = ReconstructionConfig.preset("quick")
    cfg.num_points = 3000
    cfg.voxel_field.grid_size = grid
    cfg.voxel_field.render_size = render
    cfg.voxel_field.samples_per_ray = samples
    cfg.multiview.fit_steps = fit_steps
    cfg.multiview.num_views = 6
    return cfg


def hidden_side_points(view: ObjectView, count: int = 4000, tolerance_m: float = 0.003) -> np.ndarray:
    """Ground-truth surface samples (world frame) the input camera does NOT see: behind the visible surface."""
    points, _ = trimesh.sample.sample_surface(view.gt_mesh_world, count, seed=0)
    T = view.T_cam_from_world
    p_cam = points @ T[:3, :3].T + T[:3, 3]
    intr = view.inp.intrinsics
    uv = np.round(intr.project(p_cam)).astype(int)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < intr.width) & (uv[:, 1] >= 0) & (uv[:, 1] < intr.height)
    depth = np.full(len(points), np.inf)
    seen = np.asarray(view.inp.depth_m, dtype=np.float64)[uv[inside, 1], uv[inside, 0]]
    depth[inside] = np.where(np.isfinite(seen), seen, np.inf)
    return points[p_cam[:, 2] > depth + tolerance_m]


def hidden_side_scores(result, view: ObjectView, threshold_m: float = 0.005) -> dict[str, float]:
    """Completeness on the hidden side: mean distance (m) from hidden ground-truth points to the result's mesh
    surface (exact point-to-triangle distance, so the figure does not depend on how many points the result samples),
    and the fraction of them within ``threshold_m`` (recall of the unseen part)."""
    hidden = hidden_side_points(view)
    vertices_world = transform_points(invert(view.T_cam_from_world), np.asarray(result.vertices, dtype=np.float64))
    faces = np.ascontiguousarray(result.faces, dtype=np.int64)
    d = np.sqrt(igl.point_mesh_squared_distance(np.ascontiguousarray(hidden), vertices_world, faces)[0])
    return {"hidden_dist": float(d.mean()), "hidden_recall": float((d < threshold_m).mean())}
