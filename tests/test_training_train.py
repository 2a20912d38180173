"""Training loop on a tiny random Zero-1-to-3: loss goes down, checkpoints load in the pipeline, resume is exact."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from _training_helpers import single_torch_thread, tiny_dataset, tiny_model  # noqa: F401
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from z123_ros.errors import ConfigError
from z123_ros.novel_views import load_zero123
from z123_ros.novel_views.testing import build_components, unet_config
from z123_ros.training import cli
from z123_ros.training.checkpoint import load_training_components
from z123_ros.training.train import TrainConfig, conditioning_dropout_masks, read_log, train

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def data(root):
    return tiny_dataset(root)


@pytest.fixture(scope="module")
def model(root):
    return tiny_model(root)


def _config(data, model, out, **kw):
    base = dict(
        data_dir=str(data),
        model_path=str(model),
        output_dir=str(out),
        batch_size=8,
        learning_rate=1e-3,
        warmup_steps=5,
        log_every=1,
        cache_images=True,
        ema_decay=0.9,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_conditioning_dropout_fractions():
    r = torch.rand(400_000, generator=torch.Generator().manual_seed(0))
    drop_clip, drop_image = conditioning_dropout_masks(r, 0.05)
    assert (drop_clip & ~drop_image).float().mean() == pytest.approx(0.05, abs=0.002)  # CLIP alone
    assert (drop_clip & drop_image).float().mean() == pytest.approx(0.05, abs=0.002)  # both
    assert (~drop_clip & drop_image).float().mean() == pytest.approx(0.05, abs=0.002)  # image latent alone
    assert (~drop_clip & ~drop_image).float().mean() == pytest.approx(0.85, abs=0.003)


def test_loss_decreases_and_checkpoint_loads_in_pipeline(data, model, tmp_path):
    result = train(_config(data, model, tmp_path / "run", max_steps=40, checkpoint_every=20, cache_latents=True))
    losses = np.array([loss for _, loss in result.losses])
    assert [s for s, _ in result.losses] == list(range(1, 41))
    assert losses[-8:].mean() < 0.6 * losses[:4].mean(), losses
    assert result.step == 40 and result.checkpoint.name == "step-000040"
    assert [r["step"] for r in read_log(result.log_path)] == list(range(1, 41))

    # The checkpoint is a model folder in the starting model's layout that the pipeline loads as it is ...
    ckpt = result.checkpoint
    assert (ckpt / "cc_projection").is_dir() and (ckpt / "model_index.json").is_file()
    pipe = load_zero123(ckpt, progress_bar=False)
    # ... holding the EMA weights of the trained parts, the frozen parts unchanged.
    ema = load_file(str(ckpt / "training_state" / "ema.safetensors"))
    raw = load_file(str(ckpt / "training_state" / "trainable.safetensors"))
    unet_state = pipe.unet.state_dict()
    for name, value in ema.items():
        if name.startswith("unet."):
            torch.testing.assert_close(unet_state[name[5:]], value)
    torch.testing.assert_close(pipe.projection.linear.weight, ema["projection.linear.weight"])
    assert not torch.equal(ema["unet.conv_in.weight"], raw["unet.conv_in.weight"])
    start = load_zero123(model, progress_bar=False)
    torch.testing.assert_close(pipe.vae.state_dict()["encoder.conv_in.weight"], start.vae.encoder.conv_in.weight)
    assert not torch.equal(pipe.unet.conv_in.weight, start.unet.conv_in.weight)
    out = pipe(np.full((64, 64, 3), 0.8, np.float32), views=[(10.0, 30.0, 0.0)], num_inference_steps=3)
    assert out.images.shape == (1, 64, 64, 3) and np.isfinite(out.images).all()
    # An older checkpoint was kept (keep_checkpoints=2), the frozen parts are hard links, not copies.
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")) == ["step-000020", "step-000040"]
    vae_file = next((ckpt / "vae").glob("*.safetensors"))
    assert vae_file.stat().st_nlink >= 2


def test_resume_continues_the_same_run(data, model, tmp_path):
    out = tmp_path / "run"
    cfg = _config(data, model, out, max_steps=6, checkpoint_every=3, keep_checkpoints=0, batch_size=4)
    full = train(cfg)
    log_full = read_log(out / "train_log.jsonl")
    final_full = load_file(str(out / "checkpoints" / "step-000006" / "training_state" / "trainable.safetensors"))

    # Resume in place from step 3: the log is cut back to step 3 and steps 4-6 are replayed identically.
    resumed = train(
        _config(
            data,
            model,
            out,
            max_steps=6,
            checkpoint_every=3,
            keep_checkpoints=0,
            batch_size=4,
            resume=str(out / "checkpoints" / "step-000003"),
        )
    )
    assert resumed.start_step == 3 and resumed.step == 6 == full.step
    assert [s for s, _ in resumed.losses] == [4, 5, 6]
    log = read_log(out / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in log], [r["loss"] for r in log_full], rtol=1e-5)
    final = load_file(str(out / "checkpoints" / "step-000006" / "training_state" / "trainable.safetensors"))
    for name, value in final_full.items():
        torch.testing.assert_close(final[name], value, rtol=1e-5, atol=1e-6)
    state = json.loads((out / "checkpoints" / "step-000006" / "training_state" / "state.json").read_text())
    assert state["step"] == 6 and state["ema_updates"] == 6

    # "auto" picks the newest checkpoint: nothing left to do, the step count stays.
    again = train(_config(data, model, out, max_steps=6, batch_size=4))
    assert again.start_step == 6 and again.step == 6 and again.losses == []


def test_start_from_image_variation_model(data, tmp_path):
    """An SD image-variation folder (4-channel UNet, no projection): UNet widened with zero weights, projection
    identity-initialised on the CLIP part, projection trained at 10x the learning rate."""
    parts = build_components("tiny", seed=1)
    folder = tmp_path / "sd-image-variation"
    with torch.random.fork_rng():
        torch.manual_seed(1)
        unet4 = UNet2DConditionModel(**{**unet_config("tiny"), "in_channels": 4})
    unet4.save_pretrained(folder / "unet")
    parts["vae"].save_pretrained(folder / "vae")
    parts["image_encoder"].save_pretrained(folder / "image_encoder")
    parts["scheduler"].save_pretrained(folder / "scheduler")

    loaded = load_training_components(folder)
    clip_dim = parts["image_encoder"].config.projection_dim
    w = loaded.projection.linear.weight
    assert loaded.projection_initialised and w.shape == (clip_dim, clip_dim + 4)
    torch.testing.assert_close(w[:, :clip_dim], torch.eye(clip_dim))
    assert not w[:, clip_dim:].any() and not loaded.projection.linear.bias.any()
    assert loaded.unet.config.in_channels == 8
    x = torch.randn(2, 4, 8, 8)
    extra = torch.randn(2, 4, 8, 8)
    tokens = torch.randn(2, 1, clip_dim)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.unet(torch.cat([x, extra], 1), 10, encoder_hidden_states=tokens).sample,
            unet4(x, 10, encoder_hidden_states=tokens).sample,
        )

    result = train(_config(data, folder, tmp_path / "run", max_steps=3, warmup_steps=0, batch_size=2))
    log = read_log(result.log_path)
    assert all(r["lr_projection"] == pytest.approx(10 * r["lr"]) for r in log)
    pipe = load_zero123(result.checkpoint, progress_bar=False)
    assert pipe.unet.config.in_channels == 8


def test_precision_accumulation_layout(data, model, tmp_path):
    result = train(
        _config(
            data,
            model,
            tmp_path / "run",
            max_steps=2,
            batch_size=2,
            gradient_accumulation_steps=2,
            mixed_precision="bf16",
            save_layout="diffusers",
            use_ema=False,
        )
    )
    assert result.step == 2 and all(np.isfinite(loss) for _, loss in result.losses)
    assert (result.checkpoint / "clip_camera_projection").is_dir()
    assert not (result.checkpoint / "training_state" / "ema.safetensors").exists()
    assert load_zero123(result.checkpoint, progress_bar=False).unet is not None
    with pytest.raises(ConfigError, match="fp16"):
        train(_config(data, model, tmp_path / "x", max_steps=1, mixed_precision="fp16", device="cpu"))
    with pytest.raises(ConfigError, match="batch_size"):
        train(_config(data, model, tmp_path / "x", batch_size=0))


def _parser():
    parser = argparse.ArgumentParser(prog="z123")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli(data, model, tmp_path, capsys):
    parser = _parser()
    args = parser.parse_args(["render-dataset", "--objects", "no_such_object", "--out", str(tmp_path / "d")])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("z123: error:") and err.count("\n") == 1
    assert not (tmp_path / "d").exists()

    args = parser.parse_args(
        ["train", "--data", str(tmp_path / "nothing"), "--model", str(model), "--out", str(tmp_path / "r")]
    )
    assert args.func(args) == 2
    assert "does not exist" in capsys.readouterr().err

    args = parser.parse_args(
        [
            "train",
            "--data",
            str(data),
            "--model",
            str(model),
            "--out",
            str(tmp_path / "run"),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--objects",
            "box",
            "--train-views",
            "0",
            "1",
            "2",
            "--use-ema",
            "false",
        ]
    )
    assert args.func(args) == 0
    assert "step 2" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert config["objects"] == ["box"] and config["train_views"] == [0, 1, 2] and config["use_ema"] is False
    assert (tmp_path / "run" / "checkpoints" / "step-000002" / "unet").is_dir()


def test_stable_zero123_keeps_its_convention(data, root, tmp_path):
    """Stable Zero123 puts the condition view's absolute polar in the 4th pose entry; its checkpoints stay marked
    as Stable Zero123 so the pipeline uses the same convention at inference."""
    model = tiny_model(root, layout="stable")
    assert load_zero123(model, progress_bar=False).is_stable_zero123
    result = train(_config(data, model, tmp_path / "run", max_steps=2, batch_size=2, use_ema=False))
    assert all(np.isfinite(loss) for _, loss in result.losses)
    assert load_zero123(result.checkpoint, progress_bar=False).is_stable_zero123


def test_evaluate_views(data, model):
    from z123_ros.training.evaluate import evaluate_views

    pipe = load_zero123(model, progress_bar=False)
    first = evaluate_views(pipe, data, cond_views=[0], target_views=[10, 11], objects=["box"], num_inference_steps=2)
    again = evaluate_views(pipe, data, cond_views=[0], target_views=[10, 11], objects=["box"], num_inference_steps=2)
    assert first.pairs == [("box", 0, 10), ("box", 0, 11)]
    assert first.images.shape == (2, 64, 64, 3)
    assert np.isfinite(first.psnr) and first.psnr == again.psnr  # same seed, same images, same score
    assert first.psnr == pytest.approx(np.mean(first.per_pair_psnr))
