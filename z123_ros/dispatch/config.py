"""Configuration of the dispatch layer: where Ray runs, which worker actors exist, and the job policies.

Every field is flat, a nested dataclass or the ``pools`` map of them, so the ROS node can derive its parameters from
it (``dispatch.address``, ``dispatch.reconstruction.num_gpus``, ...: each pool's fields sit under its kind's name).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from z123_ros.dispatch.kinds import default_pools, get_kind
from z123_ros.dispatch.pool import WorkerPoolConfig
from z123_ros.errors import ConfigError


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
    worker_niceness: int = 0
    """Embedded Ray only: niceness Ray adds to its actor processes over the process that starts it (sets
    RAY_worker_niceness before Ray starts; 0 = the actors run as nice as the node). Ray's own default, +15, makes the
    actors, which do the node's work, yield to every other process on the machine: on a busy computer the
    reconstructions starve (frame-to-mesh p50 3.5 s against 1.5 s on the loaded 2-core development machine)."""
    lean_head: bool = True
    """Embedded Ray only, without the dashboard: start the GCS, the raylet and the raylet's agents, and not Ray's
    API server (without the dashboard it serves only usage statistics, which are off), its autoscaler monitor (a
    fixed local node has nothing to scale; ``ray status`` then prints no autoscaler report) nor, unless
    ``log_to_driver``, its log monitor (z123_ros/dispatch/head.py). ray.init waits for the API server before it
    starts the raylet: leaving these out took 1.0-1.3 s off every start and restart of the embedded Ray on the
    2-core development machine (docs/node/latency.md). The raylet's agents start lean too
    (z123_ros/dispatch/raylet_agents.py): a stand-in for the dashboard agent where Ray's would serve nothing
    (without ``ray[default]``), and Ray's runtime-env agent with its port written before its imports, so the raylet
    registers and starts its workers without waiting for them (0.6 CPU-s less). False = Ray's standard head."""
    dashboard: bool = False
    """Embedded Ray only: start Ray's dashboard (web UI, job and state APIs; needs ``pip install 'ray[default]'``) on
    127.0.0.1:``dashboard_port``, with Ray's standard head (``lean_head`` does not apply). Off by default: the node
    does not use it, and it costs about a second of every start. A cluster's dashboard is its head's business."""
    dashboard_port: int = 8265
    """Embedded Ray with ``dashboard`` only: the dashboard's port on 127.0.0.1 (Ray's default 8265)."""
    connect_retry_ms: int = 100
    """Embedded Ray only: wait between the attempts of Ray's processes to connect to the raylet's and the object
    store's local sockets (sets RAY_raylet_client_connect_timeout_milliseconds, unless already set; Ray's default is
    1000). The raylet's first connection to its own object store often comes before the store listens: that retry
    then cost a whole second, in 4 of 6 starts on the 2-core development machine (docs/node/latency.md). The number
    of attempts (RAY_raylet_client_num_connect_attempts) is scaled so that Ray still gives up after 10 s."""
    prestart_workers: bool = True
    """Embedded Ray only: the raylet starts its Python workers (one per CPU it schedules) as it starts, not when the
    driver connects (sets RAY_enable_worker_prestart, unless already set): the actors' processes then start while
    Ray's agents and the driver's connection do. ray.init 1.73 -> 1.31 s, Ray up with two warm actors 3.04 ->
    2.64-2.81 s on the loaded 2-core development machine (docs/node/latency.md). Ray also uses this setting to start
    workers ahead of a backlog of tasks (the dispatcher runs actors only)."""
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
    pools: dict[str, WorkerPoolConfig] = field(default_factory=default_pools, metadata={"inline": True})
    """Worker kind -> its pool of actors (kinds: z123_ros.dispatch.kinds; reconstruction runs ReconstructionJob,
    novel_views runs NovelViewsJob). A kind left out has no actors. The default holds every registered production
    kind with its default pool (one reconstruction actor); ROS parameters: ``dispatch.<kind>.<field>``."""
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
    """First wait before reconnecting to an unreachable cluster; doubled after every failed attempt. Isolated: a Ray
    lost after it had been ready this long is restarted at once (the backoff is for restarts that fail)."""
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
    standby_process: bool = True
    """Isolated only: once the actors are warm and idle, start the next dispatch process ahead of need (Python up, Ray
    imported, the job inputs' modules too, waiting), so a restart after Ray was lost skips Python's start and the
    imports."""
    resubmit_lost_jobs: bool = True
    """Isolated only: jobs in flight when Ray was lost are submitted again once it is back (until their deadline);
    False = they end at once with ``cluster_lost``."""
    wait_slice_s: float = 0.01
    """Longest ray.wait() of the collector thread while jobs run: the latency for new jobs to reach a free actor."""
    latency_window: int = 512
    """Finished jobs kept for the latency percentiles in stats()."""

    def job_input_modules(self) -> list[str]:
        """Modules whose classes this config's jobs and results carry (unpickled in the dispatch process for every
        job): it imports them once ready, a standby dispatch process ahead of need. Only the types' module, not the
        backends' stack (trimesh, scipy, scikit-image), which only the actors run."""
        return ["z123_ros.reconstruction.base"] if self.pool("reconstruction").num_actors else []

    def pool(self, kind: str) -> WorkerPoolConfig:
        """The pool of ``kind`` (no actors when ``pools`` leaves it out); ConfigError for an unknown kind."""
        get_kind(kind)
        return self.pools.get(kind) or WorkerPoolConfig(num_actors=0)

    @property
    def embedded(self) -> bool:
        return not self.address

    def validate(self) -> None:
        """Raise ConfigError naming the first out-of-range value."""
        for kind, pool in self.pools.items():
            get_kind(kind)
            pool.validate(kind)
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
        if not 0 <= self.worker_niceness <= 19:
            raise ConfigError(f"dispatch.worker_niceness must be in 0..19, got {self.worker_niceness}")
        if self.object_store_memory_mb < 64:
            raise ConfigError(f"dispatch.object_store_memory_mb must be >= 64 (MiB), got {self.object_store_memory_mb}")
        if not 10 <= self.connect_retry_ms <= 1000:
            raise ConfigError(f"dispatch.connect_retry_ms must be in 10..1000, got {self.connect_retry_ms}")
        if not 1 <= self.dashboard_port <= 65535:
            raise ConfigError(f"dispatch.dashboard_port must be in 1..65535, got {self.dashboard_port}")
        if self.latency_window < 1:
            raise ConfigError(f"dispatch.latency_window must be >= 1, got {self.latency_window}")
        if self.address and self.address not in ("auto",) and ":" not in self.address:
            raise ConfigError(f"dispatch.address must be 'host:port', 'auto' or 'ray://host:port': {self.address!r}")
        if self.auth_mode not in ("token", "disabled"):
            raise ConfigError(f"dispatch.auth_mode must be 'token' or 'disabled', got {self.auth_mode!r}")
        if not any(pool.num_actors for pool in self.pools.values()):
            raise ConfigError("dispatch: every pool has num_actors = 0, so no job could ever run")
