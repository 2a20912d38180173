"""Simplifying a mesh to a face budget while keeping its shape and its topology (quadric edge-collapse decimation).

The node sends at most ``max_mesh_faces`` triangles per object; a container's wall meshes to 60-130 k. Vertex
clustering (one vertex per cubic cell) merged the two faces of a 1-2 mm wall once the cell outgrew the wall, and
could make a watertight mesh non-manifold. An edge collapse only merges the two ends of an existing edge, placed
where the quadric error of the planes around them is least, so a wall's two faces (joined only at the rim) stay
apart and flat regions give up their triangles first.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import fast_simplification
import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from z123_ros.reconstruction.base import ReconstructionResult
from z123_ros.reconstruction.mesh import shared_edges, watertight

logger = logging.getLogger(__name__)

#: fast_simplification keeps the mesh being simplified in module-global C++ state (load, simplify, read back are
#: three calls): one simplification at a time per process.
_LOCK = threading.Lock()


#: fast_simplification's ``agg`` (threshold growth per pass) of the decimations tried in turn. 1 collapses in a
#: nearer order of error than its default 7 at the same cost: on the conditions benchmark's 27 meshes over 30 k faces
#: it left a pinch on 1 after the folds were removed (7: 7), which :func:`_unpinch` repairs. 7 comes second because
#: agg 1's thresholds can run out before the budget is met (a coarse mesh cut far down).
AGGRESSIVENESS = (1.0, 7.0)
#: fast_simplification's thresholds are absolute squared distances: the mesh is scaled for it so that its mean edge
#: is this long, the resolution :data:`AGGRESSIVENESS` was measured at (the depth backend's meshes: 0.8-5.6 mm
#: edges, the containers' ~1 mm), so that the result does not depend on the mesh's units.
UNIT_EDGE = 1e-3


def simplify_result(result: ReconstructionResult, max_faces: int) -> ReconstructionResult:
    """``result`` with its mesh decimated to at most ``max_faces`` faces (``result`` itself when it fits).

    For a reconstruction actor: it decimates in parallel with the others, and the node's process (one GIL for every
    callback) then only checks the face count. ``watertight`` is decided again, the time is ``timings["simplify"]``;
    the points stay those sampled on the full mesh.
    """
    if len(result.faces) <= max_faces:
        return result
    t0 = time.perf_counter()
    vertices, faces, kept = decimate_checked(result.vertices, result.faces, max_faces)
    if not kept:
        logger.warning(
            "decimating a %d-face mesh to %d faces broke its watertightness or split it", len(result.faces), len(faces)
        )
    timings = {**result.timings, "simplify": time.perf_counter() - t0}
    return dataclasses.replace(
        result, vertices=vertices, faces=faces, watertight=all(watertight(faces)), timings=timings
    )


def decimate_checked(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(vertices, faces) with at most ``max_faces`` faces (the input itself when it already fits), and whether the
    input's watertightness and piece count were kept (False: the first result within the budget, or the input
    itself when none was).

    ``vertices`` (V, 3) float, ``faces`` (F, 3) int indices into them, already validated by the caller. A watertight
    input stays watertight and a one-piece input one piece: a collapse can fold two faces onto each other (the pair
    is removed after) or pinch two sheets into one edge or vertex (pulled apart again, a sliver the pinch closed off
    dropped); the next of :data:`AGGRESSIVENESS` runs only when that still fails or the budget was not met.
    """
    v = np.ascontiguousarray(vertices, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    if len(f) <= max_faces:
        return v, f, True
    was_watertight, n_pieces = watertight(f)[0], pieces(f)
    origin = v.min(axis=0)
    scale = UNIT_EDGE / max(float(np.linalg.norm(v[f[:, 0]] - v[f[:, 1]], axis=1).mean()), 1e-12)
    unit = (v - origin) * scale
    fitting = None
    for agg in AGGRESSIVENESS:
        with _LOCK:
            sv, sf = fast_simplification.simplify(unit, f, target_count=max_faces, agg=agg)
        sv = np.asarray(sv, dtype=np.float64) / scale + origin
        sf = _unfold(np.asarray(sf, dtype=np.int64))
        if len(sf) > max_faces:  # the collapses stop at the count (or one under) unless the thresholds ran out
            continue
        kept = (not was_watertight or watertight(sf)[0]) and pieces(sf) <= n_pieces
        if not kept:
            sv, sf = _unpinch(sv, sf)
            # A pinch can close off a sliver (6 faces of no volume on one cup): the input's number of pieces, the
            # largest, stay (the backend keeps the largest piece for the same reason: mesh.largest_mesh_piece).
            sf = _largest_pieces(sf, n_pieces)
            if was_watertight and not watertight(sf)[0]:
                sf = _fill_small_holes(sv, sf)
            kept = (not was_watertight or watertight(sf)[0]) and len(sf) <= max_faces
        if kept:
            return _compact(sv, sf) + (True,)
        fitting = fitting or (sv, sf)
    if fitting is None:  # agg 7's thresholds grow fast enough for any count in practice
        return v, f, False
    return _compact(*fitting) + (False,)


def _unfold(faces: np.ndarray) -> np.ndarray:
    """``faces`` without the faces that share their three vertices with another: a collapse that folds a face onto
    its neighbour leaves the pair back to back, each of its edges then used four times; without both, twice."""
    s = np.sort(faces, axis=1)
    n = int(s.max()) + 1
    # One int64 per vertex triple (n < 2^21 for any mesh this sees) keeps the sort 1-D: 3x faster than axis=0.
    _, inverse, counts = np.unique((s[:, 0] * n + s[:, 1]) * n + s[:, 2], return_inverse=True, return_counts=True)
    return faces[counts[inverse] == 1]


def _unpinch(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two sheets pinched into one edge (used by four faces) or one vertex, pulled apart: every vertex gets a copy
    per fan of faces around it, faces in one fan joined by edges used exactly twice. A vertex of a manifold mesh has
    one fan and keeps its index; the copies of a pinched one sit where it was (the sheets touch, topologically apart).
    """
    n = len(faces)
    corner_vertex = faces.reshape(-1)  # corner 3k + i is face k's vertex i
    _, pairs = shared_edges(faces)
    e1, e2 = pairs[:, 0], pairs[:, 1]  # the two uses (face 3k + i: edge from corner i to corner i + 1) of each
    # Across a shared edge the faces' corners at each of its two vertices are one fan.
    c1a, c1b = e1, 3 * (e1 // 3) + (e1 % 3 + 1) % 3
    c2a, c2b = e2, 3 * (e2 // 3) + (e2 % 3 + 1) % 3
    same_a = corner_vertex[c1a] == corner_vertex[c2a]  # the two faces run the edge the same way (inconsistent)
    rows = np.concatenate([c1a, c1b])
    cols = np.concatenate([np.where(same_a, c2a, c2b), np.where(same_a, c2b, c2a)])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(3 * n, 3 * n))
    _, fan = connected_components(graph, directed=False)
    # One new vertex per fan; a vertex's first fan keeps its index, so a manifold mesh comes back unchanged.
    fans, first_corner = np.unique(fan, return_index=True)
    source = corner_vertex[first_corner]
    keeps = np.zeros(len(fans), dtype=bool)
    keeps[np.unique(source, return_index=True)[1]] = True
    index = np.empty(len(fans), dtype=np.int64)
    index[keeps] = source[keeps]
    index[~keeps] = len(vertices) + np.arange(int((~keeps).sum()))
    new_vertices = np.concatenate([vertices, vertices[source[~keeps]]])
    return new_vertices, index[np.searchsorted(fans, fan)].reshape(-1, 3)


def _compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices ``faces`` use, in their order, and the faces renumbered to them."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces] = True
    index = np.cumsum(used) - 1
    return vertices[used], index[faces]


def _fill_small_holes(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``faces`` with the triangle and quad holes closed (trimesh's fill_holes: faces on the existing vertices).
    Pinches meeting at a vertex pull apart into fans that no longer pair up and leave a few such holes (the mug of
    bench_node's scene 0: 4 edges of 45 k used once)."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    mesh.fill_holes()
    return np.asarray(mesh.faces, dtype=np.int64) if len(mesh.vertices) == len(vertices) else faces


def _largest_pieces(faces: np.ndarray, count: int) -> np.ndarray:
    """The faces of the ``count`` pieces with the most faces (pieces as :func:`pieces` counts them)."""
    labels = _vertex_labels(faces)
    if labels.max() < count:
        return faces
    per_face = labels[faces[:, 0]]
    sizes = np.bincount(per_face)
    return faces[np.isin(per_face, np.argsort(-sizes, kind="stable")[:count])]


def _vertex_labels(faces: np.ndarray) -> np.ndarray:
    """A piece label per vertex (faces sharing a vertex are one piece; an unused vertex is a piece of its own)."""
    n = int(faces.max()) + 1
    rows, cols = np.concatenate([faces[:, 0], faces[:, 1]]), np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def pieces(faces: np.ndarray) -> int:
    """How many pieces the faces make (faces sharing a vertex are one piece; unused vertices count for none)."""
    if not len(faces):
        return 0
    return len(np.unique(_vertex_labels(faces)[faces[:, 0]]))
