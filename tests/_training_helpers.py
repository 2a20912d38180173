"""Helpers of the training tests: a tiny dataset and a tiny model whose VAE is fitted to it.

The tiny random model's VAE is random, so its decoder does not invert its encoder and image-space scores would say
nothing about the UNet. The real model starts from the pretrained SD VAE; the stand-in here is a tiny VAE fitted for a
few hundred steps as an autoencoder on the rendered images, saved back into the model folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from z123_ros.training.dataset import ViewPairDataset


def fit_tiny_vae(model_folder: Path, data_dir: Path, steps: int = 300, seed: int = 0, lr: float = 3e-3) -> float:
    """Fit ``model_folder/vae`` as an autoencoder of the dataset's images; returns the final reconstruction MSE.

    Also sets the VAE's ``scaling_factor`` to 1 / std of the latents, as Stable Diffusion did for its VAE.
    """
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(model_folder / "vae")
    size = int(vae.config.sample_size)
    data = ViewPairDataset(data_dir, image_size=size, cache=True)
    images = torch.stack(
        [data.image(o, v) for o, rec in enumerate(data.records) for v in range(len(rec.images))]
    )  # (N, 3, S, S) in [-1, 1]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    vae.train()
    mse = float("nan")
    for _ in range(steps):
        x = images[torch.randint(len(images), (16,), generator=g)]
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=g)
        recon = vae.decode(z).sample
        rec_loss = torch.nn.functional.mse_loss(recon, x)
        loss = rec_loss + 1e-6 * posterior.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        mse = float(rec_loss.detach())
    vae.eval()
    with torch.no_grad():
        std = float(vae.encode(images).latent_dist.mode().std())
    vae.register_to_config(scaling_factor=1.0 / std)
    vae.save_pretrained(model_folder / "vae", safe_serialization=True)
    return mse


_CACHE: dict[str, Path] = {}


@pytest.fixture(autouse=False)
def single_torch_thread():
    """One intra-op thread: on the shared 2-core machine OpenMP spin-waiting makes 2 threads ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_dataset(root: Path, image_size: int = 96) -> Path:
    """Render (once per test session) a YCB mug, a YCB mustard bottle and a user OBJ box into ``root/data``."""
    key = f"data-{image_size}"
    if key not in _CACHE:
        import trimesh

        from z123_ros.training.render import RenderConfig, render_dataset

        meshes = root / "user_meshes"
        meshes.mkdir(parents=True, exist_ok=True)
        trimesh.creation.box(extents=(0.3, 0.1, 0.2)).export(meshes / "box.obj")
        data = root / "data"
        render_dataset(
            ["025_mug", "006_mustard_bottle", str(meshes)], data, RenderConfig(image_size=image_size), workers=2
        )
        _CACHE[key] = data
    return _CACHE[key]


def tiny_model(root: Path, layout: str = "kxic") -> Path:
    """A tiny random Zero-1-to-3 folder (the novel-view engineer's writer), once per session and layout."""
    key = f"model-{layout}"
    if key not in _CACHE:
        from z123_ros.novel_views.testing import save_tiny_zero123

        _CACHE[key] = save_tiny_zero123(root / f"tiny-{layout}", layout=layout, seed=0)
    return _CACHE[key]
