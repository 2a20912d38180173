#!/usr/bin/env bash
# Set up z123_ros on a fresh Debian/Ubuntu machine with no ROS installed. Idempotent: a second run takes seconds.
#   1. apt packages the stack needs (only those missing; needs root or sudo)
#   2. a virtual environment .venv with the pinned Python stack (constraints.txt), ROS 2 from pip wheels
#   3. the z123_interfaces messages (and tf2_msgs, which has no pip wheel, unless one is installed) built with CMake
#      into the venv (scripts/build_interfaces.py)
#   4. the z123_ros package itself (console scripts z123, z123-node, z123-sim-camera; share files in the ament index)
# Environment: PYTHON (default python3, must be 3.11: the ROS 2 wheels are cp311), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
start=$(date +%s)

# 1. apt: open3d needs libusb; its offscreen renderer needs Vulkan (without it the process aborts); CMake and a C++
#    compiler build the messages.
apt_pkgs=(libusb-1.0-0 libvulkan1 mesa-vulkan-drivers cmake g++ libgl1 libglib2.0-0 libgomp1)
missing=()
for pkg in "${apt_pkgs[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if ! "$PYTHON" -c "import ensurepip" >/dev/null 2>&1; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "[install] apt packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. venv + pinned Python packages (skipped when requirements and constraints are unchanged since the last install)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
pyver=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$pyver" != "3.11" ]; then
  echo "[install] error: Python $pyver in $VENV; the ROS 2 pip wheels need Python 3.11 (set PYTHON=python3.11)" >&2
  exit 2
fi
stamp="$VENV/.z123_requirements.sha256"
want=$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[install] Python packages (pinned by constraints.txt)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
  # torch first and pinned, so nothing can pull a multi-GB CUDA build in its place.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements.txt
  "$VENV/bin/python" -m pip check >/dev/null
  echo "$want" > "$stamp"
fi

# 3. messages
"$VENV/bin/python" scripts/build_interfaces.py

# 4. the package (non-editable: data_files land in the ament index; reinstalled on every run, ~2 s)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation .
rm -rf build/lib build/bdist.* ./*.egg-info
"$VENV/bin/python" -c "import z123_ros, z123_interfaces.msg, tf2_msgs.msg, rclpy"
echo "[install] ready in $(( $(date +%s) - start )) s: $(du -sh "$VENV" | cut -f1) in $VENV"
