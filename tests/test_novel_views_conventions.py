"""Every Zero-1-to-3 convention the pipeline must keep, pinned on a tiny random model (CPU, seconds)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from _novel_views_helpers import object_image, single_torch_thread, tiny_model  # noqa: F401

from z123_ros.camera import orbit_pose, relative_view, zero123_pose_vector
from z123_ros.novel_views import load_zero123
from z123_ros.novel_views.clip import CLIP_MEAN, CLIP_STD, clip_preprocess


@pytest.fixture(scope="module")
def pipe():
    return load_zero123(tiny_model("kxic"), progress_bar=False)


@pytest.fixture(scope="module")
def stable_pipe():
    return load_zero123(tiny_model("stable"), progress_bar=False)


class UNetSpy:
    """Records what the UNet is called with."""

    def __init__(self, unet):
        self.calls = []
        self.handle = unet.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        self.calls.append((sample.detach().clone(), timestep, kwargs["encoder_hidden_states"].detach().clone()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_pose_vector_is_dpolar_rad_sin_cos_dradius(pipe):
    poses = pipe.pose_vectors([(30.0, 90.0, 0.5), (-15.0, 180.0, 0.0), (0.0, -90.0, -0.2)])
    expected = [
        [math.radians(30), 1.0, 0.0, 0.5],
        [math.radians(-15), 0.0, -1.0, 0.0],
        [0.0, -1.0, 0.0, -0.2],
    ]
    np.testing.assert_allclose(poses.cpu().numpy(), expected, atol=1e-6)
    # One convention module: the pipeline's vectors are z123_ros.camera's.
    np.testing.assert_allclose(poses[0].cpu().numpy(), zero123_pose_vector(30.0, 90.0, 0.5), atol=1e-6)


def test_pose_from_two_cameras_matches_reference_get_T(pipe):
    """get_T of the reference: spherical coords of both camera centres; d_polar > 0 when the target is lower."""
    T_in = orbit_pose(60.0, 10.0, 2.0)
    T_target = orbit_pose(80.0, 100.0, 2.2)
    view = relative_view(T_in, T_target, np.zeros(3))
    pose = pipe.pose_vectors([view])[0].cpu().numpy()
    np.testing.assert_allclose(pose, [math.radians(20), 1.0, 0.0, 0.2], atol=1e-5)


def test_stable_zero123_fourth_entry_is_absolute_input_polar(stable_pipe):
    assert stable_pipe.is_stable_zero123
    poses = stable_pipe.pose_vectors([(10.0, 45.0, 0.3)], input_polar_deg=60.0).cpu().numpy()
    np.testing.assert_allclose(
        poses[0], [math.radians(10), math.sin(math.pi / 4), math.cos(math.pi / 4), math.radians(60)], atol=1e-6
    )


def test_single_token_zero_uncond_and_unscaled_mode_latent_concat(pipe):
    image = object_image()
    views = [(0.0, 90.0, 0.0), (20.0, 200.0, 0.1)]
    with UNetSpy(pipe.unet) as spy:
        pipe(image, views=views, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert len(spy.calls) == 2  # one UNet call per step: views x both guidance branches in one batch
    sample, _, hidden = spy.calls[0]
    n = len(views)
    assert sample.shape == (2 * n, 8, 8, 8)
    assert hidden.shape == (2 * n, 1, 32)  # ONE cross-attention token per sample

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0 * 2 - 1
    with torch.no_grad():
        mode = pipe.vae.encode(x).latent_dist.mode()
    # Conditional branch: the posterior MODE, not scaled by 0.18215; unconditional branch: zeros.
    torch.testing.assert_close(sample[n:, 4:], mode.expand(n, -1, -1, -1), atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(sample[:n, 4:]) == 0
    assert float(mode.abs().mean()) > 0.05  # a scaled latent would be ~5x smaller; make sure the check can fail
    # Both branches see the same noisy latent.
    torch.testing.assert_close(sample[:n, :4], sample[n:, :4])

    # Unconditional token: zeros AFTER the projection; conditional: projection([CLIP image embedding, pose]).
    assert torch.count_nonzero(hidden[:n]) == 0
    with torch.no_grad():
        clip = pipe.image_encoder(pixel_values=clip_preprocess(x, 224)).image_embeds[:, None]
        poses = pipe.pose_vectors(views)
        expected = pipe.projection(torch.cat([clip.expand(n, -1, -1), poses[:, None]], dim=-1))
    torch.testing.assert_close(hidden[n:], expected, atol=1e-5, rtol=1e-5)


def test_guidance_combines_branches_with_scale(pipe):
    cond = pipe.encode_condition(object_image())
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(3, 4, 8, 8, generator=gen)
    t = torch.tensor([100, 500, 900])
    poses = pipe.pose_vectors([(0, 30, 0), (10, 60, 0), (-10, 90, 0)])
    eps_3 = pipe.guided_noise(latents, t, cond, poses, guidance_scale=3.0)
    eps_1 = pipe.guided_noise(latents, t, cond, poses, guidance_scale=1.0)  # conditional branch only
    with torch.no_grad():
        tokens = pipe.projection(torch.cat([cond.clip_embeds.expand(3, -1, -1), poses[:, None]], -1))
        zeros = torch.zeros_like(cond.image_latents).expand(3, -1, -1, -1)
        eps_u = pipe.unet(torch.cat([latents, zeros], 1), t, encoder_hidden_states=torch.zeros_like(tokens)).sample
        eps_c = pipe.unet(
            torch.cat([latents, cond.image_latents.expand(3, -1, -1, -1)], 1), t, encoder_hidden_states=tokens
        ).sample
    torch.testing.assert_close(eps_1, eps_c, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eps_3, eps_u + 3.0 * (eps_c - eps_u), atol=1e-5, rtol=1e-5)
    # The memory knob does not change the result.
    torch.testing.assert_close(
        pipe.guided_noise(latents, t, cond, poses, 3.0, max_views_per_batch=1), eps_3, atol=1e-5, rtol=1e-5
    )


def _keys_cubic_resize_align_corners(img: np.ndarray, out: int, a: float = -0.75) -> np.ndarray:
    """Reference bicubic (Keys, a = -0.75, align_corners=True, clamped borders) for a (C, H, W) float image."""

    def weights(s):
        s = abs(s)
        if s <= 1:
            return (a + 2) * s**3 - (a + 3) * s**2 + 1
        if s < 2:
            return a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a
        return 0.0

    def matrix(n_in):
        m = np.zeros((out, n_in))
        for i in range(out):
            src = i * (n_in - 1) / (out - 1)
            base = math.floor(src)
            for k in range(base - 1, base + 3):
                m[i, min(max(k, 0), n_in - 1)] += weights(src - k)
        return m

    rows, cols = matrix(img.shape[1]), matrix(img.shape[2])
    return np.einsum("ih,chw,jw->cij", rows, img, cols)


def test_clip_preprocessing_is_openai_bicubic_224_with_clip_mean_std():
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, size=(3, 20, 16))
    got = clip_preprocess(torch.from_numpy(img)[None].float(), 224)[0].numpy()
    resized = _keys_cubic_resize_align_corners(img, 224)
    expected = ((resized + 1) / 2 - np.array(CLIP_MEAN)[:, None, None]) / np.array(CLIP_STD)[:, None, None]
    np.testing.assert_allclose(got, expected, atol=2e-4)
    # A constant grey image maps exactly to (0.5 - mean) / std.
    grey = clip_preprocess(torch.zeros(1, 3, 64, 64), 224)
    np.testing.assert_allclose(
        grey[0, :, 100, 100].numpy(), (0.5 - np.array(CLIP_MEAN)) / np.array(CLIP_STD), atol=1e-6
    )


def test_clip_encoder_receives_openai_preprocessed_pixels(pipe):
    seen = []
    handle = pipe.image_encoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["pixel_values"].clone()), with_kwargs=True
    )
    try:
        image = object_image()
        pipe.encode_condition(image)
    finally:
        handle.remove()
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0 * 2 - 1
    torch.testing.assert_close(seen[0], clip_preprocess(x, 224))


def test_defaults_guidance_3_ddim_50_steps_training_schedule(pipe):
    params = inspect.signature(type(pipe).__call__).parameters
    assert params["guidance_scale"].default == 3.0
    assert params["num_inference_steps"].default == 50
    assert params["eta"].default == 1.0  # the original demo's DDIM eta
    sched = pipe.scheduler
    assert type(sched).__name__ == "DDIMScheduler"
    cfg = sched.config
    assert (cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule) == (
        1000,
        0.00085,
        0.012,
        "scaled_linear",
    )
    assert (cfg.steps_offset, cfg.clip_sample, cfg.set_alpha_to_one, cfg.prediction_type) == (
        1,
        False,
        False,
        "epsilon",
    )
    sched.set_timesteps(50)
    assert sched.timesteps[0] == 981 and sched.timesteps[-1] == 1


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampling_loop_matches_reference_ddim_with_guidance(pipe, eta):
    """The whole loop against the reference DDIMSampler's formulas (ldm ddim.py), written out in float64 numpy.

    ldm: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2; DDIM timesteps range(0, 1000, 1000 // S) + 1;
    alpha_prev of the last step = alphas_cumprod[0]; sigma = eta sqrt((1 - a_prev) / (1 - a) (1 - a / a_prev));
    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z.
    """
    steps, views = 4, [(0.0, 90.0, 0.0), (25.0, 300.0, 0.2)]
    image = object_image()
    x_T = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    noise_gen = torch.Generator().manual_seed(8)
    out = pipe(
        image, views=views, num_inference_steps=steps, eta=eta, latents=x_T, generator=noise_gen, output_type="latent"
    ).images

    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    ddim_t = np.arange(0, 1000, 1000 // steps) + 1
    cond = pipe.encode_condition(image)
    poses = pipe.pose_vectors(views)
    replay = torch.Generator().manual_seed(8)  # the same stream the scheduler drew its DDIM noise from
    x = x_T.double().numpy()
    for i in reversed(range(steps)):
        t = int(ddim_t[i])
        a = alphas_cumprod[t]
        a_prev = alphas_cumprod[ddim_t[i - 1]] if i > 0 else alphas_cumprod[0]
        eps = pipe.guided_noise(torch.from_numpy(x).float(), torch.full((2,), t), cond, poses, 3.0).double().numpy()
        x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
        sigma = eta * np.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps
        if eta > 0:
            x = x + sigma * torch.randn(2, 4, 8, 8, generator=replay).double().numpy()
    np.testing.assert_allclose(out.numpy(), x, atol=2e-4, rtol=1e-4)
