"""One fully populated sample of each custom message, shared by the publisher process and the test."""

from geometry_msgs.msg import Point
from sensor_msgs.msg import PointField
from shape_msgs.msg import MeshTriangle


def SAMPLES() -> dict:  # noqa: N802 - reads like the constant it stands for
    """float32 fields hold values exact in float32, so equality after the round trip is exact."""
    from z123_interfaces.msg import ObjectReconstruction, ObjectSegmentation, SegmentedObject, StageTiming

    rec = ObjectReconstruction()
    rec.header.frame_id = "camera_color_optical_frame"
    rec.header.stamp.sec, rec.header.stamp.nanosec = 1234, 5678
    rec.object_id = 7
    rec.mesh.vertices = [Point(x=0.1, y=0.2, z=0.9), Point(x=0.15, y=0.2, z=0.9), Point(x=0.1, y=0.25, z=0.95)]
    rec.mesh.triangles = [MeshTriangle(vertex_indices=[0, 1, 2])]
    rec.cloud.header = rec.header
    rec.cloud.height, rec.cloud.width = 1, 2
    rec.cloud.fields = [
        PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")
    ]
    rec.cloud.point_step, rec.cloud.row_step = 12, 24
    rec.cloud.data = bytes(range(24))
    rec.cloud.is_dense = True
    rec.pose.position.z = 0.92
    rec.pose.orientation.w = 1.0
    rec.extent.x, rec.extent.y, rec.extent.z = 0.05, 0.06, 0.12
    rec.metric = True
    rec.confidence = 0.75
    rec.backend = "depth"
    rec.timings = [
        StageTiming(stage="segmentation", seconds=0.015625),
        StageTiming(stage="reconstruction", seconds=1.5),
    ]

    obj = SegmentedObject()
    obj.id = 3
    obj.box.x_offset, obj.box.y_offset, obj.box.width, obj.box.height = 10, 20, 4, 2
    obj.mask.height, obj.mask.width, obj.mask.encoding, obj.mask.step = 2, 4, "mono8", 4
    obj.mask.data = bytes([0, 255, 255, 0, 255, 255, 255, 255])
    obj.has_3d = True
    obj.centroid = Point(x=0.01, y=0.02, z=0.8)
    obj.extent.x, obj.extent.y, obj.extent.z = 0.1, 0.1, 0.2
    obj.score = 0.875
    obj.method = "rgbd_tabletop"
    seg = ObjectSegmentation()
    seg.header = rec.header
    seg.objects = [obj]
    seg.has_plane = True
    seg.plane = [0.0, -0.8, -0.6, 0.7]
    seg.camera_polar_deg = 53.125
    return {"reconstruction": rec, "segmentation": seg, "timing": StageTiming(stage="queue", seconds=0.25)}
