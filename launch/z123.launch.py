"""``ros2 launch z123_ros z123.launch.py``: z123_node with config/z123_node.yaml, optionally the simulated camera.

For users with a full ROS 2 install (launch and launch_ros have no pip wheels). Without them, start the same nodes
with the same YAML as processes::

    python -m z123_ros.ros.sim_camera_node --ros-args --params-file config/sim_camera.yaml
    python -m z123_ros.ros.node --ros-args --params-file config/z123_node.yaml

Arguments: ``sim:=true`` starts the simulated camera, ``params_file:=...`` and ``sim_params_file:=...`` replace the
YAML files, ``namespace:=...`` puts both nodes in a namespace, ``rviz:=true`` opens RViz2 with rviz/z123.rviz
(colour image, object meshes, aggregate cloud, tf) in ``fixed_frame`` (default the camera frame; ``world`` when
z123_node runs with ``target_frame: world``), ``rviz_config:=...`` replaces the RViz file.

The z123 node is a lifecycle node: it is started as a LifecycleNode and driven to active by the launch file, as
``main()`` does for plain processes.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("z123_ros")
    params_file = LaunchConfiguration("params_file")
    sim_params_file = LaunchConfiguration("sim_params_file")
    namespace = LaunchConfiguration("namespace")

    z123_node = LifecycleNode(
        package="z123_ros",
        executable="z123-node",
        # The launch file drives the lifecycle; without --managed the process would activate itself.
        arguments=["--managed"],
        name="z123_node",
        namespace=namespace,
        parameters=[params_file],
        output="screen",
    )
    sim_camera = Node(
        package="z123_ros",
        executable="z123-sim-camera",
        name="sim_camera",
        namespace=namespace,
        parameters=[sim_params_file],
        output="screen",
        condition=IfCondition(LaunchConfiguration("sim")),
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config"), "-f", LaunchConfiguration("fixed_frame")],
        output="screen",
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    configure = EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=matches_action(z123_node), transition_id=Transition.TRANSITION_CONFIGURE
        )
    )
    activate_when_configured = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=z123_node,
            start_state="configuring",
            goal_state="inactive",
            entities=[
                EmitEvent(
                    event=ChangeState(
                        lifecycle_node_matcher=matches_action(z123_node), transition_id=Transition.TRANSITION_ACTIVATE
                    )
                )
            ],
        )
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("sim", default_value="false", description="Start the simulated RGB-D camera."),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "z123_node.yaml"),
                description="Parameter file of z123_node.",
            ),
            DeclareLaunchArgument(
                "sim_params_file",
                default_value=os.path.join(share, "config", "sim_camera.yaml"),
                description="Parameter file of the simulated camera.",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of both nodes."),
            DeclareLaunchArgument("rviz", default_value="false", description="Open RViz2 with the z123 view."),
            DeclareLaunchArgument(
                "rviz_config",
                default_value=os.path.join(share, "rviz", "z123.rviz"),
                description="RViz2 configuration file.",
            ),
            DeclareLaunchArgument(
                "fixed_frame",
                default_value="camera_color_optical_frame",
                description="RViz2 fixed frame (world with target_frame: world and a camera pose on tf).",
            ),
            sim_camera,
            rviz,
            z123_node,
            activate_when_configured,
            configure,
        ]
    )
