#!/usr/bin/env bash
# The standard ROS 2 route: colcon builds a workspace holding this repo (z123_interfaces in msg/, z123_ros at the
# top) against the ROS 2 installed in the venv, then the built messages and the package's share files are used from
# the workspace's install/ after sourcing its setup script, as on an apt ROS 2 install.
# colcon does not descend into a package's folder, so both package paths are given explicitly.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$repo/.venv}
ws=$(mktemp -d /tmp/z123_colcon_ws.XXXXXX)
trap 'rm -rf "$ws"' EXIT
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH=$VIRTUAL_ENV CMAKE_PREFIX_PATH=$VIRTUAL_ENV
cd "$ws"
start=$(date +%s)
colcon --log-base "$ws/log" build --paths "$repo" "$repo/msg" --build-base "$ws/build" --install-base "$ws/install" \
  --event-handlers console_cohesion- summary+ --cmake-args -DBUILD_TESTING=OFF
set +u
# shellcheck disable=SC1091
source "$ws/install/setup.bash"
set -u
cd /
python - "$ws" <<'PY'
import sys
import z123_interfaces.msg as m
from ament_index_python.packages import get_package_share_directory

ws = sys.argv[1]
assert m.__file__.startswith(ws), f"z123_interfaces came from {m.__file__}, not the colcon workspace"
share = get_package_share_directory("z123_ros")
assert share.startswith(ws), share
import os
for script in ("z123", "z123-node", "z123-sim-camera"):  # where `ros2 run` / `ros2 launch` look (setup.cfg)
    path = os.path.join(ws, "install", "z123_ros", "lib", "z123_ros", script)
    assert os.access(path, os.X_OK), f"{path} missing"
print(f"colcon workspace OK: messages from {m.__file__}, share dir {share}")
PY
echo "[colcon] build + check in $(( $(date +%s) - start )) s"
