"""Novel-view benchmark: N views in one batched call versus N one-view calls, and peak memory.

On the tiny random-weight Zero-1-to-3 (same wiring as the published model, ~1 M UNet parameters, 64x64 images),
written in the kxic layout and loaded through ``load_zero123``, for N = 4 and 8 views, 50 DDIM steps with guidance
(10 with --quick). The batched call encodes the input once and runs N views x 2 guidance branches per UNet call; the
sequential baseline makes N calls of one view each. Both are measured side by side in the same process; the ratio
is sequential / batched wall time. Peak memory: the CUDA allocator's peak on a GPU, the peak RSS growth above the
level before the call (sampled every 2 ms) on the CPU.

``--device cuda --real-size`` builds the published architecture (UNet 860 M, CLIP ViT-L/14, SD VAE; random weights,
since none can be downloaded here) in fp16 and reports the time per 50-step batch of 4 views at 256x256.

    python bench/bench_novel_views.py [--quick] [--device cpu|cuda] [--real-size] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from _table import markdown_table  # bench/ is sys.path[0] when a bench script runs

from z123_ros.novel_views import Zero123Pipeline, load_zero123
from z123_ros.novel_views.testing import build_components, save_tiny_zero123


class PeakMemory:
    """Peak memory (MiB) of the code inside the ``with``: CUDA allocator peak, or sampled RSS growth on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._proc = psutil.Process()
            self._base = self._proc.memory_info().rss
            self._max = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, self._proc.memory_info().rss)
            self.peak_mb = (self._max - self._base) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _image(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size * 0.35) ** 2
    image = np.full((size, size, 3), 255, np.uint8)
    image[disc] = rng.integers(0, 200, size=(int(disc.sum()), 3), dtype=np.uint8)
    return image


def _views(n: int) -> list[tuple[float, float, float]]:
    return [(15.0 * ((i % 3) - 1), 360.0 * i / n, 0.0) for i in range(n)]


def compare_batched_sequential(
    pipe: Zero123Pipeline, n: int, steps: int, repeats: int, label: str
) -> dict[str, object]:
    """Best-of-``repeats`` wall time and peak memory of one N-view call versus N one-view calls."""
    device = pipe._execution_device
    image = _image(pipe.image_size)
    views = _views(n)
    pipe(image, views=views[:1], num_inference_steps=2)  # warm-up (allocator, kernels)
    batched, sequential, peak_b, peak_s = [], [], 0.0, 0.0
    for _ in range(repeats):
        with PeakMemory(device) as mem:
            _sync(device)
            t0 = time.perf_counter()
            pipe(image, views=views, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
            _sync(device)
            batched.append(time.perf_counter() - t0)
        peak_b = max(peak_b, mem.peak_mb)
        with PeakMemory(device) as mem:
            _sync(device)
            t0 = time.perf_counter()
            for view in views:
                pipe(image, views=[view], num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
            _sync(device)
            sequential.append(time.perf_counter() - t0)
        peak_s = max(peak_s, mem.peak_mb)
    b, s = min(batched), min(sequential)
    return {
        "model": label,
        "device": str(device),
        "dtype": str(pipe.unet.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads() if device.type == "cpu" else "-",
        "views": n,
        "steps": steps,
        "batched_s": b,
        "sequential_s": s,
        "speedup": s / b,
        "batched_peak_mib": peak_b,
        "sequential_peak_mib": peak_s,
    }


def real_size_pipeline(device: torch.device, dtype: torch.dtype, size: str = "real") -> Zero123Pipeline:
    """The published architecture (``size="real"``) with random weights, built directly on ``device``."""
    with torch.device(device):
        parts = build_components(size, seed=0)
    pipe = Zero123Pipeline(
        vae=parts["vae"],
        image_encoder=parts["image_encoder"],
        unet=parts["unet"],
        scheduler=parts["scheduler"],
        projection=parts["projection"],
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def run(quick: bool, device: str = "cpu", real_size: bool = False) -> list[dict]:
    """Rows of the benchmark (see the module docstring)."""
    dev = torch.device(device)
    steps, repeats = (10, 1) if quick else (50, 2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="z123_bench_nv_") as tmp:
        folder = save_tiny_zero123(Path(tmp) / "tiny", layout="kxic", seed=0)
        pipe = load_zero123(folder, device=dev, progress_bar=False)
        for n in (4, 8):
            rows.append(compare_batched_sequential(pipe, n, steps, repeats, "tiny"))
    if real_size:
        dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
        pipe = real_size_pipeline(dev, dtype)
        rows.append(compare_batched_sequential(pipe, 4, 50 if not quick else 10, 1, "real-size (random weights)"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 steps, one repeat")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="also time the published architecture (GPU: fp16)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on the CPU")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = run(args.quick, args.device, args.real_size)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
