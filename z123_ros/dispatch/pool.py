"""One pool of worker actors: how many, what each reserves, which model it loads (``dispatch.<kind>.*``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from z123_ros.errors import ConfigError


@dataclass
class WorkerPoolConfig:
    """One pool of identical Ray actors, each owning one model (built once, warmed up before the first job)."""

    num_actors: int = 0
    """Actors in the pool; 0 = this kind of job is not served (submitting one is rejected with ``no_workers``)."""
    num_cpus: float = 1.0
    """CPUs each actor reserves while alive (Ray scheduling only: it does not limit the threads the model uses)."""
    num_gpus: float = 0.0
    """GPUs each actor reserves; fractional values share one GPU (e.g. 0.5 = two actors per GPU). 0 = CPU only."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each actor reserves, e.g. {"reconstruction_node": 1}: the pool is placed only on nodes
    started with them (``ray start --resources='{"reconstruction_node": 4}'``). ROS parameter: ["name=amount"]."""
    accelerator_type: str = ""
    """Ray accelerator type each actor needs (e.g. "A100", "L4", "H100"; Ray's ``accelerator_type`` option, set on
    GPU nodes automatically): places the pool on nodes with that GPU. "" = any (or none)."""
    model_path: str = ""
    """Zero-1-to-3 weights folder or hub id loaded by the actor at start (novel_views: required; reconstruction:
    for the multiview / zero123 backends; a job's own ``model_path`` overrides it)."""
    device: str = "auto"
    """Torch device of the model: "auto" (cuda when the actor has a GPU, else cpu), "cpu", "cuda", "cuda:1"..."""
    dtype: str = "fp32"
    """Model precision: "fp32", "fp16" or "bf16" (fp16 only on a GPU)."""
    warm_up: bool = True
    """Run one small job of this kind in each actor before it takes real jobs, so the first one is not slow."""

    def validate(self, kind: str) -> None:
        if self.num_actors < 0:
            raise ConfigError(f"dispatch.{kind}.num_actors must be >= 0, got {self.num_actors}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError(
                f"dispatch.{kind}: num_cpus and num_gpus must be >= 0, got {self.num_cpus} and {self.num_gpus}"
            )
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            raise ConfigError(f"dispatch.{kind}.num_gpus above 1 must be a whole number, got {self.num_gpus}")
        for name, amount in self.resources.items():
            if name in ("CPU", "GPU", "memory", "object_store_memory") or not name:
                raise ConfigError(
                    f"dispatch.{kind}.resources: {name!r} is not a custom resource (use num_cpus/num_gpus)"
                )
            if not amount > 0:
                raise ConfigError(f"dispatch.{kind}.resources[{name!r}] must be > 0, got {amount}")
        if self.dtype not in ("fp32", "fp16", "bf16"):
            raise ConfigError(f"dispatch.{kind}.dtype must be fp32, fp16 or bf16, got {self.dtype!r}")
