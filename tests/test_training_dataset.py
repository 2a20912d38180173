"""Training renders: folder format, camera distribution, poses (back-projected depth lands on the mesh), view pairs."""

from __future__ import annotations

import json

import igl
import numpy as np
import PIL.Image
import pytest
import torch
import trimesh
from _training_helpers import tiny_dataset

from z123_ros.camera import cartesian_to_spherical, relative_view, transform_points
from z123_ros.errors import InputError
from z123_ros.training.dataset import ViewPairDataset, read_object
from z123_ros.training.render import (
    ObjectSource,
    RenderConfig,
    load_source_mesh,
    normalise_mesh,
    render_dataset,
    resolve_objects,
    sample_cameras,
)

OBJECTS = ("025_mug", "006_mustard_bottle", "box")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("training"))


def _normalised_mesh(data, object_id):
    meta = json.loads((data / object_id / "cameras.json").read_text())
    source = meta["source"]
    if source.startswith("ycb:"):
        src = ObjectSource(id=object_id, ycb_name=source[4:])
    else:
        src = ObjectSource(id=object_id, path=source)
    mesh, _ = load_source_mesh(src)
    normalised, centre, scale = normalise_mesh(mesh)
    np.testing.assert_allclose(centre, meta["normalisation"]["centre"])
    assert scale == pytest.approx(meta["normalisation"]["scale"])
    return normalised


def test_folder_format(data):
    index = json.loads((data / "dataset.json").read_text())
    assert index["format"] == "z123-views" and index["version"] == 1
    assert sorted(e["id"] for e in index["objects"]) == sorted(OBJECTS)
    assert index["render"]["num_views"] == 12
    for object_id in OBJECTS:
        meta = json.loads((data / object_id / "cameras.json").read_text())
        assert len(meta["views"]) == 12
        for view in meta["views"]:
            with PIL.Image.open(data / object_id / view["image"]) as im:
                assert im.mode == "RGBA" and im.size == (96, 96)
                rgba = np.asarray(im)
            off = rgba[..., 3] == 0
            # Object present and framed: some pixels on, the border off, RGB white wherever alpha is 0.
            assert 0.02 < (~off).mean() < 0.8
            assert off[0].all() and off[-1].all() and off[:, 0].all() and off[:, -1].all()
            assert (rgba[off][:, :3] == 255).all()
    assert not list(data.glob(".tmp-*")), "temporary folders left behind"


def test_camera_distribution(data):
    for object_id in OBJECTS:
        rec = read_object(data / object_id)
        intr = rec.intrinsics
        # FoV 49.1 deg at the image size, principal point at the centre.
        assert np.degrees(2 * np.arctan(0.5 * intr.width / intr.fx)) == pytest.approx(49.1, abs=1e-6)
        for T in rec.T_world_from_cam:
            centre = T[:3, 3]
            assert 1.5 - 1e-9 <= np.linalg.norm(centre) <= 2.2 + 1e-9
            # The optical axis (camera +z) points at the object centre (the origin).
            np.testing.assert_allclose(T[:3, 2], -centre / np.linalg.norm(centre), atol=1e-9)
            np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)


def test_sampled_cameras_cover_the_sphere():
    views = sample_cameras(RenderConfig(num_views=4000), np.random.default_rng(0))
    polar = np.array([v[0] for v in views])
    radius = np.array([v[2] for v in views])
    assert radius.min() >= 1.5 and radius.max() <= 2.2
    # The paper samples the whole sphere (minz = -2.2): views from below as often as from above.
    assert 0.4 < (polar > 90).mean() < 0.6
    assert polar.min() < 20 and polar.max() > 160


def test_backprojected_depth_lands_on_the_normalised_mesh(data):
    for object_id in OBJECTS:
        rec = read_object(data / object_id)
        mesh = _normalised_mesh(data, object_id)
        # The normalisation the paper uses: longest bounding-box side 1, box centred on the origin.
        assert np.ptp(mesh.bounds, axis=0).max() == pytest.approx(1.0)
        np.testing.assert_allclose(mesh.bounds.mean(axis=0), 0.0, atol=1e-9)
        for view in (0, 5, 11):
            depth = rec.load_depth(view)
            mask = rec.load_rgba(view)[..., 3] > 0
            assert (np.isfinite(depth) == mask).mean() > 0.99
            points_cam, _ = rec.intrinsics.backproject(depth)
            points = transform_points(rec.T_world_from_cam[view], points_cam)
            dist = np.sqrt(igl.point_mesh_squared_distance(points, mesh.vertices, mesh.faces.astype(np.int64))[0])
            # Depth PNG step 1e-4 units; renderer error well below a pixel (1 px ~ 0.02 units at radius 2).
            assert np.median(dist) < 2e-3, (object_id, view, np.median(dist))
            assert np.quantile(dist, 0.99) < 1e-2, (object_id, view, np.quantile(dist, 0.99))


def test_mesh_projects_onto_its_silhouette(data):
    """The stored poses and intrinsics reproduce the silhouette: projected mesh vertices fall inside the mask."""
    rec = read_object(data / "025_mug")
    mesh = _normalised_mesh(data, "025_mug")
    for view in range(0, 12, 3):
        T_cam_from_world = np.linalg.inv(rec.T_world_from_cam[view])
        uv = rec.intrinsics.project(transform_points(T_cam_from_world, mesh.vertices))
        mask = rec.load_rgba(view)[..., 3] > 0
        u, v = np.round(uv).astype(int).T
        inside = (u >= 0) & (u < mask.shape[1]) & (v >= 0) & (v < mask.shape[0])
        assert inside.all()
        assert mask[v, u].mean() > 0.97


def test_rendering_is_deterministic_and_independent_of_workers(data, tmp_path):
    box = data.parent / "user_meshes"
    render_dataset([str(box)], tmp_path / "again", RenderConfig(image_size=96), workers=1)
    for name in ("000.png", "007.png", "cameras.json"):
        assert (tmp_path / "again" / "box" / name).read_bytes() == (data / "box" / name).read_bytes()


def test_existing_objects_are_kept_and_index_merged(data, tmp_path):
    out = tmp_path / "ds"
    cfg = RenderConfig(image_size=32, num_views=3, save_depth=False)
    first = render_dataset([str(data.parent / "user_meshes")], out, cfg)
    again = render_dataset([str(data.parent / "user_meshes"), "013_apple"], out, cfg)
    assert not first.objects[0].skipped
    assert [o.skipped for o in again.objects] == [True, False]
    index = json.loads((out / "dataset.json").read_text())
    assert [e["id"] for e in index["objects"]] == ["013_apple", "box"]
    assert read_object(out / "box").depths == [None, None, None]


def test_glb_is_turned_z_up(tmp_path):
    # A box long along glTF's up axis (+y) must stand up (+z) after loading, as Blender's glTF import does.
    trimesh.creation.box(extents=(0.1, 0.5, 0.2)).export(tmp_path / "tall.glb")
    mesh, colour = load_source_mesh(resolve_objects([str(tmp_path / "tall.glb")])[0])
    np.testing.assert_allclose(np.ptp(mesh.bounds, axis=0), (0.1, 0.2, 0.5), atol=1e-6)
    assert len(colour) == 3 and all(0 <= c <= 1 for c in colour)


def test_resolve_objects(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for sub in ("a", "b"):
        trimesh.creation.icosphere(subdivisions=1).export(tmp_path / sub / "ball.ply")
    sources = resolve_objects([str(tmp_path), "025_mug", "ycb:065-b_cups"])
    assert [s.id for s in sources] == ["a__ball", "b__ball", "025_mug", "065-b_cups"]
    assert sources[2].ycb_name == "025_mug" and sources[3].ycb_name == "065-b_cups"
    assert len(resolve_objects(["ycb"])) > 20
    assert [s.id for s in resolve_objects([str(tmp_path / "a" / "ball.ply")] * 2)] == ["ball", "ball_1"]
    with pytest.raises(InputError, match="neither a mesh file"):
        resolve_objects(["no_such_object"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no mesh files"):
        resolve_objects([str(tmp_path / "empty")])
    with pytest.raises(InputError, match="at least 2"):
        render_dataset(["025_mug"], tmp_path / "x", RenderConfig(num_views=1))


def test_view_pairs(data):
    ds = ViewPairDataset(data, image_size=64, views=range(10))
    assert len(ds) == 3 * 10 * 9
    assert all(i < 10 and j < 10 and i != j for _, i, j in ds.pairs)
    item = ds[17]
    obj, i, j = ds.pairs[17]
    assert item["cond"].shape == item["target"].shape == (3, 64, 64)
    assert item["cond"].min() >= -1 and item["cond"].max() <= 1
    # Composited on white: the corners are white.
    assert torch.allclose(item["cond"][:, 0, 0], torch.ones(3))
    rec = ds.records[obj]
    d_polar, d_az, d_radius = relative_view(rec.T_world_from_cam[i], rec.T_world_from_cam[j], np.zeros(3))
    expected = [np.radians(d_polar), np.sin(np.radians(d_az)), np.cos(np.radians(d_az)), d_radius]
    np.testing.assert_allclose(item["pose"].numpy(), expected, atol=1e-6)
    # The relative pose follows the stored cameras: target polar = cond polar + d_polar.
    polar_i = cartesian_to_spherical(rec.T_world_from_cam[i][:3, 3])[0]
    polar_j = cartesian_to_spherical(rec.T_world_from_cam[j][:3, 3])[0]
    assert np.degrees(float(item["pose"][0])) == pytest.approx(polar_j - polar_i, abs=1e-4)
    assert float(item["cond_polar_rad"]) == pytest.approx(np.radians(rec.polar_deg[i]), abs=1e-6)
    # Swapping the views negates d_polar and d_radius and mirrors the azimuth.
    swapped = ds.relative_pose(obj, j, i)
    np.testing.assert_allclose(swapped[[0, 3]], -item["pose"].numpy()[[0, 3]], atol=1e-6)
    np.testing.assert_allclose(swapped[1], -item["pose"].numpy()[1], atol=1e-6)


def test_view_pairs_errors(data, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        ViewPairDataset(tmp_path / "missing")
    with pytest.raises(InputError, match="no view pairs"):
        ViewPairDataset(data, views=[3])
