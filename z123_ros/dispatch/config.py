"""Configuration of the dispatch layer: where Ray runs, which worker actors exist, and the job policies.

Every field is flat or a nested dataclass so the ROS node can derive its parameters from it
(``dispatch.address``, ``dispatch.reconstruction.num_gpus``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from z123_ros.errors import ConfigError

#: The worker kinds, in the order their pools are created. Each kind has one pool field on :class:`DispatchConfig`
#: and one worker class in :data:`z123_ros.dispatch.workers.WORKER_KINDS`.
KINDS = ("reconstruction", "novel_views", "echo", "cpu_burn")


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


@dataclass
class DispatchConfig:
    """Where Ray runs, which actors exist, and how jobs are queued, timed out and retried."""

    address: str | None = None
    """Ray cluster to join ("host:port" of its head, "auto", or "ray://host:10001" for Ray Client). None or "" =
    start an embedded local Ray owned by the dispatcher (and stopped with it)."""
    num_cpus: int | None = 2
    """Embedded Ray only: CPUs it may schedule on (None = all of the machine)."""
    num_gpus: int | None = None
    """Embedded Ray only: GPUs it may schedule on (None = those torch/CUDA finds)."""
    object_store_memory_mb: int = 256
    """Embedded Ray only: shared-memory object store size, MiB (Ray's default is 30 % of RAM: too much on a robot)."""
    temp_dir: str | None = None
    """Embedded Ray only: session and log folder (None = Ray's default, /tmp/ray)."""
    auth_mode: str = "token"
    """Ray authentication (RAY_AUTH_MODE, set in this process before Ray starts): "token" = every Ray RPC carries
    the cluster's token (from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; the embedded Ray creates
    one if missing), "disabled" = anyone who reaches a Ray port can run code on it. Ray enables tokens by itself only
    for clusters it finds locally, never for an explicit address, hence this setting."""
    auth_token_path: str = ""
    """File holding the cluster's token (sets RAY_AUTH_TOKEN_PATH); "" = Ray's lookup (RAY_AUTH_TOKEN, then
    ~/.ray/auth_token)."""
    namespace: str = "z123_ros"
    """Ray namespace of the dispatcher's actors (keeps them apart from other drivers on a shared cluster)."""
    log_to_driver: bool = False
    """Forward the actors' stdout/stderr into this process's output."""
    reconstruction: WorkerPoolConfig = field(default_factory=lambda: WorkerPoolConfig(num_actors=1))
    """Actors running ``z123_ros.reconstruction.reconstruct`` (ReconstructionJob)."""
    novel_views: WorkerPoolConfig = field(default_factory=WorkerPoolConfig)
    """Actors running Zero-1-to-3 novel-view synthesis (NovelViewsJob)."""
    echo: WorkerPoolConfig = field(default_factory=WorkerPoolConfig)
    """Diagnostic actors that return their input (EchoJob): transport round trips, timeouts, failure drills."""
    cpu_burn: WorkerPoolConfig = field(default_factory=WorkerPoolConfig)
    """Diagnostic actors running a deterministic CPU-bound hash chain (CpuBurnJob): throughput checks."""
    max_in_flight: int = 8
    """Jobs accepted and not yet finished (queued + running), at most. When full, a job whose ``key`` matches a
    queued job replaces it; any other job is rejected with reason ``queue_full``."""
    replace_same_key: bool = True
    """A new job replaces a queued (not yet started) job with the same ``key`` even when the queue is not full: the
    newer view of an object makes the older request stale."""
    job_timeout_s: float = 120.0
    """Default time from submit() to the result; a job's own ``timeout_s`` overrides it. A job still running at its
    deadline is reported as ``timeout`` and its actor is restarted (a running Python call cannot be interrupted)."""
    retries_on_worker_death: int = 1
    """Times a job is re-run when its actor process dies under it (jobs are idempotent); then ``worker_died``."""
    max_restarts: int = 3
    """Ray restarts of one actor after its process dies; beyond that the dispatcher replaces the actor, at most
    ``max_restarts`` times in a row without a successful warm-up, then the slot stays down."""
    connect_timeout_s: float = 120.0
    """start() waits at most this long for Ray and the actors' warm-up; later readiness still happens in the
    background."""
    reconnect_backoff_s: float = 1.0
    """First wait before reconnecting to an unreachable cluster; doubled after every failed attempt."""
    reconnect_backoff_max_s: float = 30.0
    """Longest wait between reconnection attempts."""
    health_check_period_s: float = 0.5
    """Period of the Ray liveness probe (TCP connects to the head's GCS port and to the local raylet): with
    ``health_check_failures`` = 2 a lost Ray is noticed within about 1 s."""
    health_check_failures: int = 2
    """Consecutive failed probes after which the cluster counts as lost (jobs fail with ``cluster_lost``)."""
    gcs_reconnect_timeout_s: int = 600
    """Sets RAY_gcs_rpc_server_reconnect_timeout_s in this process before Ray starts (unless already set): Ray's own
    default (60 s) terminates the whole process when the head stays away that long; the dispatcher detects the loss
    in seconds and disconnects cleanly instead."""
    isolate: bool = True
    """Run the Ray driver in a supervised child process (:class:`SupervisedDispatcher`, what the node uses): Ray
    terminates a driver whose raylet dies, and this way that is the child, which is restarted, never the node.
    False = the driver lives in the calling process (:class:`Dispatcher`; tests and benchmarks of the bare layer)."""
    child_silence_s: float = 30.0
    """Isolated only: a dispatch child that sends nothing (it sends stats 4 times a second) for this long after its
    first message is taken as hung, killed with its embedded Ray and restarted (before its first message the limit
    is ``connect_timeout_s``: Python and Ray start slowly on a busy machine)."""
    resubmit_lost_jobs: bool = True
    """Isolated only: jobs in flight when Ray was lost are submitted again once it is back (until their deadline);
    False = they end at once with ``cluster_lost``."""
    wait_slice_s: float = 0.01
    """Longest ray.wait() of the collector thread while jobs run: the latency for new jobs to reach a free actor."""
    latency_window: int = 512
    """Finished jobs kept for the latency percentiles in stats()."""

    def pool(self, kind: str) -> WorkerPoolConfig:
        if kind not in KINDS:
            raise ConfigError(f"unknown worker kind {kind!r}; choose one of {', '.join(KINDS)}")
        return getattr(self, kind)

    @property
    def embedded(self) -> bool:
        return not self.address

    def validate(self) -> None:
        """Raise ConfigError naming the first out-of-range value."""
        for kind in KINDS:
            self.pool(kind).validate(kind)
        positive = (
            "job_timeout_s",
            "connect_timeout_s",
            "reconnect_backoff_s",
            "health_check_period_s",
            "child_silence_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"dispatch.{name} must be > 0, got {getattr(self, name)}")
        if self.reconnect_backoff_max_s < self.reconnect_backoff_s:
            raise ConfigError("dispatch.reconnect_backoff_max_s must be >= dispatch.reconnect_backoff_s")
        if self.max_in_flight < 1:
            raise ConfigError(f"dispatch.max_in_flight must be >= 1, got {self.max_in_flight}")
        for name in ("retries_on_worker_death", "max_restarts"):
            if getattr(self, name) < 0:
                raise ConfigError(f"dispatch.{name} must be >= 0, got {getattr(self, name)}")
        if self.health_check_failures < 1:
            raise ConfigError(f"dispatch.health_check_failures must be >= 1, got {self.health_check_failures}")
        if not 0 < self.wait_slice_s <= 1.0:
            raise ConfigError(f"dispatch.wait_slice_s must be in (0, 1], got {self.wait_slice_s}")
        if self.object_store_memory_mb < 64:
            raise ConfigError(f"dispatch.object_store_memory_mb must be >= 64 (MiB), got {self.object_store_memory_mb}")
        if self.latency_window < 1:
            raise ConfigError(f"dispatch.latency_window must be >= 1, got {self.latency_window}")
        if self.address and self.address not in ("auto",) and ":" not in self.address:
            raise ConfigError(f"dispatch.address must be 'host:port', 'auto' or 'ray://host:port': {self.address!r}")
        if self.auth_mode not in ("token", "disabled"):
            raise ConfigError(f"dispatch.auth_mode must be 'token' or 'disabled', got {self.auth_mode!r}")
        if not any(self.pool(kind).num_actors for kind in KINDS):
            raise ConfigError("dispatch: every pool has num_actors = 0, so no job could ever run")
