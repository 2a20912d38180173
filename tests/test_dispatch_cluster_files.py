"""ray_cluster/: the cluster-launcher config and the KubeRay manifest parse and name what the dispatcher expects."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "ray_cluster"


def _load(name: str) -> dict:
    data = yaml.safe_load((CLUSTER_DIR / name).read_text())
    assert isinstance(data, dict)
    return data


def test_cluster_launcher_config() -> None:
    import ray

    config = _load("cluster.yaml")
    assert {"cluster_name", "provider", "available_node_types", "head_node_type", "setup_commands"} <= set(config)
    # Private network only.
    assert config["provider"]["use_internal_ips"] is True
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu_types = [name for name, spec in types.items() if spec.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu_types and all(types[name]["max_workers"] >= 1 for name in gpu_types)
    assert types[config["head_node_type"]]["resources"].get("GPU", 0) == 0
    # The same project and Ray version on every node; the token shipped to every node.
    setup = "\n".join(config["setup_commands"])
    assert "z123_ros" in setup and f"ray[default]=={ray.__version__}" in setup
    assert f"python{sys.version_info.major}.{sys.version_info.minor} -m venv" in setup, "Ray needs the same Python"
    assert "~/.ray/auth_token" in config["file_mounts"]
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    for command in (head, worker):
        assert "RAY_AUTH_MODE=token" in command and "--disable-usage-stats" in command
    assert "--head" in head and "--port=6379" in head and "--dashboard-host=127.0.0.1" in head
    assert "--address=$RAY_HEAD_IP:6379" in worker
    assert "0.0.0.0" not in head


def test_kuberay_raycluster_manifest() -> None:
    import ray

    manifest = _load("kuberay-raycluster.yaml")
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    spec = manifest["spec"]
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert head["rayStartParams"]["num-cpus"] == "0"
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["gcs-server"] == 6379
    groups = spec["workerGroupSpecs"]
    gpu_groups = [
        g
        for g in groups
        if int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1
    ]
    assert gpu_groups, "no worker group requests a GPU"
    for group in gpu_groups:
        assert group["maxReplicas"] >= group["minReplicas"] >= 0
        assert int(group["rayStartParams"]["num-gpus"]) >= 1


def test_readme_names_the_parameter_and_the_security_settings() -> None:
    text = (CLUSTER_DIR / "README.md").read_text()
    for needle in ("dispatch.address", "RAY_AUTH_MODE=token", "RAY_USE_TLS", "RAY_TLS_CA_CERT", "use_internal_ips"):
        assert needle in text


def test_node_image_matches_this_ray_and_python() -> None:
    import ray

    text = (CLUSTER_DIR / "Dockerfile").read_text()
    tag = f"rayproject/ray:{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}-gpu"
    assert f"FROM {tag}" in text and "pip install" in text and "z123_ros" in text
