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


def render_condition_view(
    name: str,
    range_m: float,
    elevation_deg: float,
    seed: int = 0,
    others: tuple[str, ...] = (),
    placement_radius_m: float = 0.0,
    keep_columns: tuple[int, int] | None = None,
) -> ObjectView:
    """``name`` seen from ``range_m`` at ``elevation_deg`` above the table (object 1 of the scene), with ``others``
    beside it; ``keep_columns`` crops the image to those columns (an object cut by the image border). The input
    carries the scene's label image, as the node passes the segmentation's."""
    from z123_ros.camera import CameraIntrinsics
    from z123_ros.sim import SceneConfig, render_tabletop_scene

    elev = np.deg2rad(elevation_deg)
    names = (name, *others)
    scene = render_tabletop_scene(
        SceneConfig(
            seed=seed,
            num_objects=len(names),
            object_names=names,
            width=320,
            height=240,
            camera_distance_m=range_m * np.cos(elev),
            camera_height_m=0.04 + range_m * np.sin(elev),
            placement_radius_m=placement_radius_m,
            compute_visible_fraction=False,
        )
    )
    rgb, depth, ids, intr = scene.rgb, scene.depth_m, scene.instance_ids, scene.intrinsics
    if keep_columns is not None:
        a, b = keep_columns
        rgb, depth, ids = rgb[:, a:b].copy(), depth[:, a:b].copy(), ids[:, a:b].copy()
        intr = CameraIntrinsics(intr.fx, intr.fy, intr.cx - a, intr.cy, b - a, intr.height)
    inp = ReconstructionInput(
        rgb=rgb, mask=ids == 1, intrinsics=intr, depth_m=depth, T_cam_from_world=scene.T_cam_from_world, labels=ids
    )
    return ObjectView(name, inp, scene.objects[0].mesh_world, scene.T_cam_from_world)


def condition_object_view(bucket: str, seed: int, name: str) -> ObjectView:
    """Object ``name`` in scene ``seed`` of the conditions benchmark's ``bucket`` (other objects around it, the
    scene's label image passed as the node passes the segmentation's)."""
    from z123_ros.sim.conditions import render_condition

    scene = render_condition(bucket, seed)
    obj = next(o for o in scene.objects if o.name == name)
    ids = scene.instance_ids
    inp = ReconstructionInput(
        rgb=scene.rgb,
        mask=ids == obj.id,
        intrinsics=scene.intrinsics,
        depth_m=scene.depth_m,
        T_cam_from_world=scene.T_cam_from_world,
        labels=ids,
    )
    return ObjectView(name, inp, obj.mesh_world, scene.T_cam_from_world)


def mesh_pieces(result: ReconstructionResult) -> int:
    """Connected pieces of a result's mesh (a grasp planner needs exactly one)."""
    return len(trimesh.Trimesh(result.vertices, result.faces).split(only_watertight=False))


def single_shell_view(
    name: str, sensor: str, seed: int, range_m: float, elevation_deg: float, azimuth_deg: float | None = None
) -> tuple[ReconstructionInput, trimesh.Trimesh]:
    """(input, ground truth in the camera frame) of ``name`` alone at 640x480 through a sensor preset (azimuth: 30
    degrees a seed unless given); the label image passed as the node passes it. bench/bench_shells.py renders its
    sweep with it too."""
    from z123_ros.sim import SceneConfig, render_tabletop_scene

    scene = render_tabletop_scene(
        SceneConfig(
            seed=seed, num_objects=1, object_names=(name,), width=640, height=480, camera_range_m=range_m,
            camera_elevation_deg=elevation_deg,
            camera_azimuth_deg=30.0 * seed if azimuth_deg is None else azimuth_deg, sensor=sensor,
            compute_visible_fraction=False,
        )
    )  # fmt: skip
    obj = scene.objects[0]
    inp = ReconstructionInput(
        rgb=scene.rgb, mask=scene.instance_ids == obj.id, intrinsics=scene.intrinsics, depth_m=scene.depth_m,
        T_cam_from_world=scene.T_cam_from_world, labels=scene.instance_ids,
    )  # fmt: skip
    gt = obj.mesh_world.copy()
    gt.apply_transform(scene.T_cam_from_world)
    return inp, gt
