"""Convert a model folder's pickle weights (.bin) to safetensors, once, without running code from them.

Some published folders (e.g. kxic/zero123-xl at its main revision) hold ``diffusion_pytorch_model.bin`` pickles.
:func:`~z123_ros.novel_views.load_zero123` refuses those; this converts them with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers (no arbitrary objects, so no code runs), and writes
``*.safetensors`` next to them.

    python -m z123_ros.novel_views.convert /path/to/zero123-xl
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from z123_ros.errors import ModelLoadError, Z123Error

logger = logging.getLogger(__name__)

_TARGET_NAMES = {
    "diffusion_pytorch_model.bin": "diffusion_pytorch_model.safetensors",
    "pytorch_model.bin": "model.safetensors",
}


def convert_pickle_weights(folder: str | os.PathLike) -> list[Path]:
    """Write safetensors for every sub-folder that has a known .bin weight file and no safetensors; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist")
    written = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if any(sub.glob("*.safetensors")):
            continue
        for name, target in _TARGET_NAMES.items():
            source = sub / name
            if not source.is_file():
                continue
            try:
                state = torch.load(source, map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, OSError) as exc:
                raise ModelLoadError(f"{source} is not a plain tensor state dict; refusing to load it: {exc}") from exc
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise ModelLoadError(f"{source} does not hold a flat dict of tensors")
            out = sub / target
            # safetensors refuses shared storage: make every tensor own its memory.
            save_file({k: v.contiguous().clone() for k, v in state.items()}, str(out))
            logger.info("wrote %s", out)
            written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="model folder with .bin weights")
    args = parser.parse_args(argv)
    try:
        written = convert_pickle_weights(args.folder)
    except Z123Error as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    for path in written:
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
