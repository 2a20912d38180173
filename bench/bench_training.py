"""Training benchmark: optimizer steps per second of the Zero-1-to-3 training loop.

Times :func:`z123_ros.training.train` end to end per step (data, frozen encoders, UNet forward + backward, AdamW,
EMA) on a tiny random model (64x64 images, UNet ~1 M parameters) on two rendered YCB objects, in fp32 and bf16
autocast, with and without the frozen-encoder cache. The first steps (cache filling, allocator warm-up) are excluded.
``--real-size`` adds the published architecture (1.25 B parameters, 256x256, random weights) on a CUDA device in
fp16 and bf16. All rows of one run come from the same process, so their ratios are side by side.

    python bench/bench_training.py [--quick] [--threads 1] [--real-size --device cuda]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch
from _table import markdown_table  # bench/ is sys.path[0] when a bench script runs

from z123_ros.novel_views.testing import save_tiny_zero123
from z123_ros.training.render import RenderConfig, render_dataset
from z123_ros.training.train import TrainConfig, read_log, train


def time_training(
    data: Path, model: Path, out: Path, steps: int, warmup: int, batch: int, precision: str, cache: bool, device: str
) -> dict:
    """Steps per second over steps warmup+1..steps of one run."""
    result = train(
        TrainConfig(
            data_dir=str(data),
            model_path=str(model),
            output_dir=str(out),
            max_steps=steps,
            batch_size=batch,
            mixed_precision=precision,
            cache_images=True,
            cache_latents=cache,
            log_every=1,
            checkpoint_every=10**9,
            keep_checkpoints=1,
            device=device,
            resume=None,
        )
    )
    log = read_log(result.log_path)
    first, last = log[warmup - 1], log[-1]
    rate = (last["step"] - first["step"]) / (last["elapsed_s"] - first["elapsed_s"])
    return {
        "precision": precision,
        "encoder_cache": cache,
        "batch": batch,
        "steps_per_second": rate,
        "pairs_per_second": rate * batch,
        "final_loss": last["loss"],
    }


def run(quick: bool, device: str = "cpu", real_size: bool = False) -> list[dict]:
    """Rows of the benchmark (see the module docstring)."""
    steps, warmup = (12, 4) if quick else (40, 8)
    rows = []
    with tempfile.TemporaryDirectory(prefix="z123_bench_train_") as tmp:
        tmp = Path(tmp)
        data = render_dataset(
            ["025_mug", "006_mustard_bottle"], tmp / "data", RenderConfig(image_size=64, save_depth=False)
        ).root
        tiny = save_tiny_zero123(tmp / "tiny", layout="kxic", seed=0)
        for precision in ("no", "bf16"):
            for cache in (False, True):
                out = tmp / f"out-{precision}-{cache}"
                row = time_training(data, tiny, out, steps, warmup, 8, precision, cache, device)
                rows.append({"model": "tiny (64 px)", "device": device, **row})
        if real_size:
            big = save_tiny_zero123(tmp / "real", layout="kxic", seed=0, size="real")
            data256 = render_dataset(["025_mug", "006_mustard_bottle"], tmp / "data256", RenderConfig()).root
            for precision in ("fp16", "bf16"):
                out = tmp / f"out-real-{precision}"
                row = time_training(data256, big, out, 8 if quick else 20, 3, 8, precision, True, device)
                rows.append({"model": "real-size (256 px)", "device": device, **row})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 steps per configuration instead of 40")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="also time the published architecture (CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on the CPU")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = run(args.quick, args.device, args.real_size)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
