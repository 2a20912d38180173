"""Helpers of the training tests: a tiny dataset and a tiny model whose VAE is fitted to it.

The tiny random model's VAE is random, so its decoder does not invert its encoder and image-space scores would say
nothing about the UNet. The real model starts from the pretrained SD VAE; the stand-in here is a tiny VAE fitted for a
few hundred steps as an autoencoder on the rendered images, saved back into the model folder.
"""

from __future__ import annotations

from pathlib import Path

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
        mse = float(rec_loss)
    vae.eval()
    with torch.no_grad():
        std = float(vae.encode(images).latent_dist.mode().std())
    vae.register_to_config(scaling_factor=1.0 / std)
    vae.save_pretrained(model_folder / "vae", safe_serialization=True)
    return mse
