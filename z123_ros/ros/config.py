"""``z123_node``'s parameters: :class:`NodeConfig` (each field one ROS parameter) and its cross-field checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from z123_ros.dispatch import DispatchConfig
from z123_ros.errors import ConfigError
from z123_ros.reconstruction import ReconstructionConfig, get_backend
from z123_ros.segmentation import SegmentationConfig, TrackerConfig


@dataclass
class NodeConfig:
    """Parameters of ``z123_node``. Each field is one ROS parameter (nested ones dotted: ``segmentation.stride``)."""

    colour_topic: str = field(default="camera/color/image_raw", metadata={"read_only": True})
    """Colour image topic (rgb8, bgr8, rgba8, bgra8 or mono8)."""
    depth_topic: str = field(default="camera/aligned_depth_to_color/image_raw", metadata={"read_only": True})
    """Depth image topic registered to the colour image (16UC1 mm or 32FC1 m); empty = RGB only."""
    camera_info_topic: str = field(default="camera/color/camera_info", metadata={"read_only": True})
    """CameraInfo of the colour camera (rectified images are assumed)."""
    colour_transport: str = field(default="raw", metadata={"read_only": True, "choices": ("raw", "compressed")})
    """raw: sensor_msgs/Image on colour_topic; compressed: CompressedImage (jpeg/png) on colour_topic + "/compressed"
    (image_transport's name), as robots stream over Wi-Fi."""
    depth_transport: str = field(default="raw", metadata={"read_only": True, "choices": ("raw", "compressed")})
    """raw: Image on depth_topic; compressed: "16UC1; compressedDepth png" on depth_topic + "/compressedDepth"."""
    target_frame: str = field(default="", metadata={"read_only": True})
    """Frame of meshes, clouds, markers and object poses; "" = the camera frame of each image. Otherwise target <-
    camera is looked up on /tf at each image stamp and objects are tracked in this frame: a fixed frame (world, map,
    odom) keeps object ids and avoids re-reconstructing static objects while the camera moves."""
    tf_timeout_s: float = field(default=0.5, metadata={"range": (0.0, 10.0)})
    """How long the worker waits for a frame's camera pose on /tf; a frame without one is dropped (no_transform)."""
    input_qos: str = field(default="sensor_data", metadata={"read_only": True, "choices": ("sensor_data", "reliable")})
    """QoS of the camera subscriptions: best-effort sensor data (camera drivers' default) or reliable."""
    sync_slop_s: float = field(default=0.03, metadata={"range": (0.0, 1.0)})
    """Largest stamp difference between colour, depth and camera info of one frame, seconds."""
    sync_queue_size: int = field(default=10, metadata={"range": (1, 100)})
    """Messages kept per camera stream while waiting for the others."""
    max_segmentation_rate_hz: float = field(default=2.0, metadata={"range": (0.01, 100.0)})
    """Frames segmented per second at most while the scene is static, and none while reconstructions run (for at
    most forget_after_s / 2): they would take the cores from them. A frame that differs from the last segmented
    one (depth or, without depth, colour changed beyond sensor noise over half of segmentation.min_object_area_px)
    is segmented at once; frames arriving while the worker is busy replace each other (the newest is kept)."""
    backend: str = field(default="depth", metadata={"read_only": True})
    """Reconstruction backend: depth (geometric, no weights), multiview or zero123 (Zero-1-to-3), hull (baseline)."""
    change_distance_m: float = field(default=0.02, metadata={"range": (0.0, 10.0)})
    """An object whose centroid moved more than this since its last reconstruction is reconstructed again."""
    change_extent_ratio: float = field(default=0.3, metadata={"range": (0.0, 10.0)})
    """... or whose size (or, without depth, mask area) changed by more than this fraction."""
    change_confirm_frames: int = field(default=2, metadata={"range": (1, 100)})
    """An object already reconstructed is reconstructed again only when it looks changed in this many segmented
    frames in a row: one frame of segmentation flicker (a merge, a noisy size) is not a change. New objects are
    reconstructed from the first frame they are segmented in, unless they may be a fragment of another object."""
    change_split_confirm_frames: int = field(default=4, metadata={"range": (1, 100)})
    """A new object inside another object's box (a fragment of it, most likely: noise splits an object in a few
    frames of every hundred), and that other object while the fragment is there, are reconstructed only when this
    holds in this many segmented frames in a row (z123_ros/ros/objects.py, ChangePolicy.split_confirm_frames)."""
    forget_after_s: float = field(default=10.0, metadata={"range": (0.1, 3600.0)})
    """Objects not segmented for this long leave the aggregated cloud and markers."""
    abandon_after_missed_frames: int = field(default=2, metadata={"range": (1, 1000)})
    """The running or queued reconstruction of an object missing from this many segmented frames in a row is
    cancelled (it left the view, or the scene changed); the object is reconstructed again if it comes back."""
    min_valid_depth_fraction: float = field(default=0.05, metadata={"range": (0.0, 1.0)})
    """Frames whose depth image has fewer valid (finite, > 0) pixels than this fraction are dropped."""
    max_image_pixels: int = field(default=3840 * 2160, metadata={"range": (1, 16384 * 16384)})
    """Larger images are dropped (a corrupt header, not a camera)."""
    max_cloud_points: int = field(default=20000, metadata={"range": (100, 10_000_000)})
    """Points per object in the reconstruction message and the aggregated cloud."""
    max_mesh_faces: int = field(default=30000, metadata={"range": (100, 10_000_000)})
    """Meshes with more faces are simplified (quadric edge collapses, watertightness kept) before publishing:
    messages stay small."""
    max_marker_faces: int = field(default=5000, metadata={"range": (100, 1_000_000)})
    """Faces per object in the RViz markers (a further, cheaper vertex-clustering simplification of the published
    mesh)."""
    publish_novel_views: bool = False
    """For every object sent to reconstruction, also generate Zero-1-to-3 novel views (needs
    dispatch.novel_views.num_actors >= 1 and its model_path) and publish them, side by side, on ~/novel_views."""
    novel_view_azimuths_deg: list[float] = field(default_factory=lambda: [90.0, 180.0, 270.0])
    """Azimuths of the published novel views relative to the input view, degrees (same polar angle and distance).
    Steps and guidance come from reconstruction.multiview."""
    diagnostics_period_s: float = field(default=1.0, metadata={"range": (0.05, 60.0), "read_only": True})
    """Period of the /diagnostics message, seconds."""
    log_throttle_s: float = field(default=5.0, metadata={"range": (0.0, 3600.0)})
    """Per-reason warnings about dropped frames are logged at most once per this many seconds."""
    heap_trim_period_s: float = field(default=10.0, metadata={"range": (0.0, 3600.0)})
    """At most this often (seconds), between two frames, the worker thread hands the C heap's free pages back to the
    operating system (glibc malloc_trim; 0 = never). Without it the node's resident memory climbs for minutes to a
    high-water mark of freed arena pages, which makes a leak hard to tell from the allocator (z123_ros.heap)."""
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    tracking: TrackerConfig = field(default_factory=TrackerConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)


def validate_node_config(config: NodeConfig) -> None:
    """Raise ConfigError for settings that are valid one by one but not together."""
    novel_views = config.dispatch.pool("novel_views")
    if config.publish_novel_views and not (novel_views.num_actors > 0 and novel_views.model_path):
        raise ConfigError(
            "publish_novel_views needs dispatch.novel_views.num_actors >= 1 and dispatch.novel_views.model_path"
        )
    if get_backend(config.backend).needs_model and not config.dispatch.pool("reconstruction").model_path:
        raise ConfigError(
            f"backend {config.backend!r} needs dispatch.reconstruction.model_path (a Zero-1-to-3 folder or hub id)"
        )
    if config.change_split_confirm_frames < config.change_confirm_frames:
        raise ConfigError(
            f"change_split_confirm_frames ({config.change_split_confirm_frames}) must be >= change_confirm_frames "
            f"({config.change_confirm_frames}): a possible split would be confirmed sooner than a plain change"
        )
    config.dispatch.validate()
    config.segmentation.validate()
    config.tracking.validate()
