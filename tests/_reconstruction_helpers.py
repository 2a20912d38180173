"""Shared helpers of the reconstruction tests and benchmark: single-object tabletop views with ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from z123_ros.camera import invert, transform_points
from z123_ros.reconstruction import ReconstructionInput, ReconstructionResult
from z123_ros.reconstruction.metrics import evaluate_mesh


@dataclass
class ObjectView:
    """One object on the table as the robot's camera sees it, with its ground-truth mesh (world frame)."""

    name: str
    inp: ReconstructionInput
    gt_mesh_world: trimesh.Trimesh
    T_cam_from_world: np.ndarray


def render_object_view(
    name: str,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    azimuth_deg: float | None = 0.0,
    depth_noise_m: float = 0.0,
) -> ObjectView:
    """Render ``name`` alone on the table (sim engineer's renderer) and package it as a reconstruction input."""
    from z123_ros.sim import SceneConfig, render_tabletop_scene

    scene = render_tabletop_scene(
        SceneConfig(
            seed=seed,
            num_objects=1,
            object_names=(name,),
            width=width,
            height=height,
            camera_azimuth_deg=azimuth_deg,
            compute_visible_fraction=False,
            depth_noise_m=depth_noise_m,
        )
    )
    obj = scene.objects[0]
    inp = ReconstructionInput(
        rgb=scene.rgb,
        mask=scene.mask(obj.id),
        intrinsics=scene.intrinsics,
        depth_m=scene.depth_m,
        T_cam_from_world=scene.T_cam_from_world,
    )
    return ObjectView(name, inp, obj.mesh_world, scene.T_cam_from_world)


def evaluate_in_world(result: ReconstructionResult, view: ObjectView, num_points: int = 10000) -> dict[str, float]:
    """IoU / Chamfer (m) / F-score@5 mm of a camera-frame metric result against the world-frame ground truth."""
    vertices_world = transform_points(invert(view.T_cam_from_world), result.vertices)
    pred = trimesh.Trimesh(vertices_world, result.faces, process=False)
    return evaluate_mesh(pred, view.gt_mesh_world, num_points=num_points, f_threshold=0.005)
