"""Settings of the segmentation stage (one dataclass, read by the CLI, the benchmark and the node's parameters)."""

from __future__ import annotations

from dataclasses import dataclass

from z123_ros.errors import ConfigError


@dataclass
class SegmentationConfig:
    """Settings of :class:`TabletopSegmenter`. Distances in metres, sizes in full-resolution pixels."""

    method: str = "tabletop"
    """Which segmenter (z123_ros.segmentation.factory): "tabletop" (geometric RGB-D), "sam" (tabletop + Segment
    Anything for RGB-only frames with an roi) or "learned" (a depth-only network trained on the simulator:
    z123_ros.segmentation.learned_segmenter)."""
    sam_model_dir: str = ""
    """Local Segment Anything folder (Hugging Face layout, safetensors) for ``method: sam``."""
    learned_weights: str = ""
    """Weights (safetensors) for ``method: learned``; empty = $Z123_LEARNED_SEG_WEIGHTS, else the packaged ones
    (z123_ros/segmentation/weights/learned_seg.safetensors, made by ``z123 train-segmenter``)."""
    stride: int = 4
    """Back-project and cluster every ``stride``-th pixel in each direction (4 on VGA: ~19 k points)."""
    plane_distance_m: float = 0.008
    """RANSAC inlier threshold for the support plane."""
    ransac_iterations: int = 200
    """Plane hypotheses drawn by RANSAC."""
    ransac_sample_points: int = 1000
    """Points each hypothesis is scored on (a random subsample of the coarse grid)."""
    min_plane_fraction: float = 0.1
    """The plane must hold at least this fraction of the valid coarse points, else the frame has no support plane."""
    min_height_m: float = 0.006
    """Points lower than this above the plane are table. Raised to 4 sigma of the plane's depth noise when larger."""
    grow_height_m: float = 0.0015
    """Pixels between this height and ``min_height_m`` next to an object are added back to it (its base)."""
    max_height_m: float = 0.6
    """Points higher than this above the plane are not objects on the table (shelves, people, walls)."""
    max_depth_m: float = 4.0
    """Workspace range along the optical axis."""
    restrict_to_table: bool = True
    """Keep only points whose foot on the plane falls inside the image hull of the plane's inlier pixels."""
    cluster_tolerance_m: float = 0.012
    """Neighbouring coarse points closer than this in 3D belong to the same object."""
    cluster_tolerance_spacing: float = 2.5
    """...or closer than this many times the coarse grid spacing at their depth (far or slanted surfaces)."""
    colour_split: bool = True
    """Split a depth cluster whose colour falls apart into several large pieces (touching objects of different
    colours at the same depth). Turn off for strongly multi-coloured objects."""
    colour_edge_threshold: float = 18.0
    """Colour difference (see ``colour_features``) that cuts a link between neighbouring points."""
    self_occlusion_gap_m: float = 0.04
    """Join two clusters of one colour across a depth step whose smallest 3D gap is below this (one object hiding
    part of itself); 0 = never. Needs ``colour_split``."""
    grazing_angle_deg: float = 70.0
    """A cluster one coarse cell wide whose surface is seen at more than this angle from its normal (a box's side
    face seen edge-on, its depth ramping steeply across the image) joins the object within
    ``self_occlusion_gap_m`` of it; 90 = never. Thin clusters facing the camera (a pen) stay objects."""
    max_step_contact_links: float = 0.1
    """Two surfaces that meet along a depth step (at least ``min_step_contact_pairs`` neighbour pairs too far apart
    to link) held together by at most this fraction of linked pairs along that contact are cut apart there: two
    touching objects whose faces happen to meet at one point (a can against a mug). A part an object hides of itself
    is joined again across the step by ``self_occlusion_gap_m``'s rule; 0 = never cut."""
    min_step_contact_pairs: int = 10
    """Neighbour pairs of depth step a contact needs before ``max_step_contact_links`` judges it (a shorter contact
    is not told apart from noise)."""
    crease_contact_split: bool = True
    """Cut two parts of a cluster apart where they meet along a concave crease that ends in depth steps, held by at
    most ``max_crease_contact_links`` of other links, when both parts reach the table: two touching boxes of one
    colour, a low one's top against a tall one's side (needs ``concave_split``)."""
    max_crease_contact_links: float = 0.3
    """``crease_contact_split`` cuts when at most this fraction of the pairs between the two parts are links other than
    the crease's (at the crease's ends, where it turns into a depth step, a few pairs still link)."""
    max_contact_fraction: float = 0.5
    """A colour piece counts as an object of its own when at most this fraction of its boundary is contact with
    other colours of the same cluster (the rest: table, background, depth edges)."""
    depth_noise_base_m: float = 0.0012
    """Sensor model of the depth noise (1 sigma) the thresholds are judged against: ``base + quad * (z - z0)^2``.
    Defaults: a structured-light camera (Kinect v1 / ASUS Xtion, Nguyen et al. 2012), the noisiest common kind;
    a better sensor only makes the geometric thresholds, which are the larger at short range, decide."""
    depth_noise_quad_m: float = 0.0019
    """Quadratic coefficient of the depth noise model, metres per m^2."""
    depth_noise_z0_m: float = 0.4
    """Range where the quadratic term of the noise model vanishes, metres."""
    noise_sigmas: float = 4.0
    """Neighbouring samples whose 3D distance is within this many standard deviations of the difference of two
    depth readings are on one surface (4: a false cut once in ~16 000 links)."""
    concave_split: bool = True
    """Cut links along concave creases (LCCP's criterion): touching objects of one colour split where they meet."""
    concave_angle_deg: float = 10.0
    """A concave crease cuts when the normals on its two sides differ by more than this (LCCP's default) and by
    three times their noise at that range."""
    colour_needs_geometry: bool = True
    """Colour edges never split across a convex crease or convexly curved surface (a carton's printed top and side,
    a can's label): only along flat or concave contacts (touching objects). Off: colour alone may split."""
    min_object_height_m: float = 0.015
    """Objects lower than this above the table are flat clutter (paper, cables 5-10 mm thick), not objects; the
    flattest objects worth picking (a marker lying down) are ~18 mm tall. 0 = keep flat objects."""
    max_base_height_m: float = 0.05
    """An object whose lowest point is higher than this above the table while the table itself is seen right below
    it in the image does not stand on the table (a chair back or furniture beyond the table's far edge). Likewise a
    surface piece of a cluster counts as an object of its own only when it reaches within this of the cluster's
    lowest point (a bottle's cap does not); 5 cm leaves room for a base hidden behind the object in front."""
    support_min_height_m: float = 0.25
    """When a second plane parallel to the dominant one lies at least this far above it (a desk or seat above the
    floor: furniture is 0.4-0.9 m tall; table-top objects are lower), the higher plane is the support surface."""
    support_min_area_m2: float = 0.04
    """...if it is at least this large (20 x 20 cm): a smaller parallel surface is the top of an object."""
    max_hole_px: int = 12
    """Samples of one surface on both sides of a hole in the depth up to this wide are still linked: a
    structured-light shadow is ``baseline * f * (1/z_back - 1/z_front)`` wide, ~7 px for a 6 cm step at 0.6 m."""
    min_object_points: int = 15
    """Clusters with fewer coarse points are dropped as noise."""
    min_object_area_px: int = 200
    """Objects whose final mask is smaller are dropped."""
    speck_fraction: float = 0.1
    """Disconnected pieces of a mask smaller than this fraction of its largest piece are dropped as specks."""
    fill_holes: bool = True
    """Fill holes of a mask unless the table (valid depth on the plane) or another object shows through them."""
    max_objects: int = 32
    """At most this many objects per frame (the largest win)."""
    seed: int = 0
    """Seed of the RANSAC sampler: the same frame always gives the same result."""
    rgb_fallback: bool = True
    """Without depth, or with depth but no plane, fall back to RGB-only segmentation (lower scores)."""
    grabcut_iterations: int = 3
    """GrabCut iterations of the RGB-only fallback."""
    grabcut_max_side: int = 240
    """The RGB-only fallback works on an image resized so its longer side is at most this (speed)."""
    min_roi_overlap: float = 0.5
    """With an roi, RGB-D objects are kept when at least this fraction of their mask lies inside it."""

    def validate(self) -> None:
        if self.method not in ("tabletop", "learned", "sam"):
            raise ConfigError(f"segmentation.method must be tabletop, learned or sam, got {self.method!r}")
        if not 1 <= self.stride <= 32:
            raise ConfigError(f"stride must be in 1..32, got {self.stride}")
        for name in ("plane_distance_m", "min_height_m", "max_height_m", "max_depth_m", "cluster_tolerance_m"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_height_m <= self.min_height_m:
            raise ConfigError(f"max_height_m ({self.max_height_m}) must exceed min_height_m ({self.min_height_m})")
        if not 0 < self.min_plane_fraction < 1:
            raise ConfigError(f"min_plane_fraction must be in (0, 1), got {self.min_plane_fraction}")
        if self.ransac_iterations < 1 or self.ransac_sample_points < 3:
            raise ConfigError("ransac_iterations must be >= 1 and ransac_sample_points >= 3")
        for name in ("depth_noise_base_m", "depth_noise_quad_m", "noise_sigmas", "min_object_height_m"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.concave_angle_deg < 90:
            raise ConfigError(f"concave_angle_deg must be in [0, 90), got {self.concave_angle_deg}")
        if not 0 < self.grazing_angle_deg <= 90:
            raise ConfigError(f"grazing_angle_deg must be in (0, 90], got {self.grazing_angle_deg}")
