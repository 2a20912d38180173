"""The project's exception hierarchy.

Every error that reaches a user derives from :class:`Z123Error`. Library code raises them at the boundary with a
message that names the bad value and says what to do; the ROS node catches them per frame, logs (throttled), counts
the drop by ``reason`` and keeps running.
"""

from __future__ import annotations


class Z123Error(Exception):
    """Base class of every error this project raises on purpose."""

    #: Short machine-readable reason, used as the drop counter key in diagnostics.
    reason: str = "error"


class InputError(Z123Error, ValueError):
    """Bad user or sensor input: malformed image, wrong encoding, NaN depth, inconsistent sizes."""

    reason = "bad_input"


class CameraError(InputError):
    """Invalid camera intrinsics or pose (zero focal length, non-rigid transform, size mismatch)."""

    reason = "bad_camera"


class ModelLoadError(Z123Error, OSError):
    """A model folder is missing, incomplete or malformed. The message names the folder and the missing part."""

    reason = "model_load"


class SegmentationError(Z123Error):
    """Segmentation could not produce an object (no support plane, empty mask)."""

    reason = "segmentation"


class ReconstructionError(Z123Error):
    """A reconstruction backend failed on a valid input (empty field, no surface extracted)."""

    reason = "reconstruction"


class DispatchError(Z123Error):
    """The Ray dispatch layer could not run a job: queue full, timeout, worker died, cluster unreachable."""

    reason = "dispatch"


class ConfigError(Z123Error, ValueError):
    """A configuration value is out of range or inconsistent."""

    reason = "config"


class FrameError(InputError):
    """A camera frame the node drops; ``reason`` names the check it failed (the /diagnostics drop counter key:
    bad_colour_image, bad_depth_image, bad_camera_info, image_too_large, size_mismatch, invalid_depth)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
