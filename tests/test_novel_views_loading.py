"""All published layouts load through one code path; broken folders give errors naming the folder and the part."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from _novel_views_helpers import object_image, single_torch_thread, tiny_model  # noqa: F401
from safetensors.torch import load_file

from z123_ros.errors import ConfigError, ModelLoadError
from z123_ros.novel_views import detect_layout, load_zero123
from z123_ros.novel_views.convert import convert_pickle_weights
from z123_ros.novel_views.projection import CameraProjection
from z123_ros.novel_views.testing import save_tiny_zero123

VIEWS = [(0.0, 90.0, 0.0), (15.0, 250.0, 0.1)]


def _run(pipe, seed=0):
    return pipe(
        object_image(), views=VIEWS, num_inference_steps=2, generator=torch.Generator().manual_seed(seed)
    ).images


@pytest.fixture()
def model_copy(tmp_path):
    def copy(layout="kxic"):
        dst = tmp_path / f"copy_{layout}"
        shutil.copytree(tiny_model(layout), dst)
        return dst

    return copy


def test_published_file_names_per_layout():
    kxic, diffusers = tiny_model("kxic"), tiny_model("diffusers")
    for folder in (kxic, diffusers):
        for name in (
            "model_index.json",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "image_encoder/config.json",
            "image_encoder/model.safetensors",
            "scheduler/scheduler_config.json",
            "feature_extractor/preprocessor_config.json",
        ):
            assert (folder / name).is_file(), name
    assert json.loads((kxic / "model_index.json").read_text())["_class_name"] == "Zero1to3StableDiffusionPipeline"
    assert json.loads((diffusers / "model_index.json").read_text())["_class_name"] == "Zero123Pipeline"
    # kxic: CCProjection, weights projection.*, NO sizes in its config; diffusers: CLIPCameraProjection, proj.*.
    kxic_cfg = json.loads((kxic / "cc_projection/config.json").read_text())
    assert kxic_cfg["_class_name"] == "CCProjection" and "in_channel" not in kxic_cfg
    assert set(load_file(str(kxic / "cc_projection/diffusion_pytorch_model.safetensors"))) == {
        "projection.weight",
        "projection.bias",
    }
    cfg = json.loads((diffusers / "clip_camera_projection/config.json").read_text())
    assert (cfg["_class_name"], cfg["additional_embeddings"]) == ("CLIPCameraProjection", 4)
    assert set(load_file(str(diffusers / "clip_camera_projection/diffusion_pytorch_model.safetensors"))) == {
        "proj.weight",
        "proj.bias",
    }
    assert sum(p.numel() for p in load_file(str(kxic / "unet/diffusion_pytorch_model.safetensors")).values()) < 1.2e6


def test_layouts_load_through_one_path_and_agree():
    """The same weights saved in the kxic and the diffusers layout give the same images."""
    kxic = load_zero123(tiny_model("kxic"), progress_bar=False)
    diffusers = load_zero123(tiny_model("diffusers"), progress_bar=False)
    assert detect_layout(tiny_model("kxic")).layout == "kxic"
    assert detect_layout(tiny_model("diffusers")).projection_dir == "clip_camera_projection"
    assert not kxic.is_stable_zero123 and not diffusers.is_stable_zero123
    np.testing.assert_array_equal(_run(kxic), _run(diffusers))


def test_stable_zero123_detected_from_files_and_overridable():
    assert load_zero123(tiny_model("stable"), progress_bar=False).is_stable_zero123
    assert not load_zero123(tiny_model("stable"), stable_zero123=False, progress_bar=False).is_stable_zero123
    assert load_zero123(tiny_model("kxic"), stable_zero123=True, progress_bar=False).is_stable_zero123


def test_stable_name_in_folder_path_is_detected(tmp_path):
    folder = shutil.copytree(tiny_model("kxic"), tmp_path / "stable-zero123")
    assert detect_layout(folder).stable_zero123
    assert not detect_layout(tiny_model("kxic")).stable_zero123


def test_missing_folder_names_it(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        load_zero123(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ("unet", "unet/"),
        ("cc_projection", "cc_projection/ or clip_camera_projection/"),
        ("scheduler", "scheduler/"),
        ("unet/diffusion_pytorch_model.safetensors", "unet/ has no weights"),
        ("image_encoder/config.json", "image_encoder/config.json is missing"),
        ("cc_projection/diffusion_pytorch_model.safetensors", "cc_projection has no weights"),
    ],
)
def test_missing_part_is_named(model_copy, remove, expected):
    folder = model_copy()
    target = folder / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ModelLoadError) as info:
        load_zero123(folder)
    assert expected in str(info.value)
    assert str(folder) in str(info.value)


def test_malformed_config_is_named(model_copy):
    folder = model_copy()
    (folder / "unet" / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match=r"unet"):
        load_zero123(folder)


def test_inconsistent_parts_are_reported(model_copy):
    folder = model_copy("diffusers")
    cfg_path = folder / "clip_camera_projection" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["embedding_dim"] = 768
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="states sizes 772 -> 768"):
        load_zero123(folder)


def test_pickle_weights_are_refused_then_converted_safely(model_copy):
    folder = model_copy()
    st = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(st)), folder / "unet" / "diffusion_pytorch_model.bin")
    st.unlink()
    with pytest.raises(ModelLoadError, match="pickle"):
        load_zero123(folder)
    written = convert_pickle_weights(folder)
    assert written == [st]
    np.testing.assert_array_equal(
        _run(load_zero123(folder, progress_bar=False)), _run(load_zero123(tiny_model(), progress_bar=False))
    )


def test_hub_id_offline_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="hub") as info:
        load_zero123("z123-test-nobody/zero123-does-not-exist")
    assert "z123-test-nobody/zero123-does-not-exist" in str(info.value)


def test_bad_dtype_scheduler_device():
    with pytest.raises(ConfigError, match="dtype"):
        load_zero123(tiny_model(), dtype="int8")
    with pytest.raises(ConfigError, match="scheduler"):
        load_zero123(tiny_model(), scheduler="magic")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            load_zero123(tiny_model(), device="cuda")


def test_other_scheduler_is_built_from_the_training_schedule():
    pipe = load_zero123(tiny_model(), scheduler="euler", progress_bar=False)
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.beta_schedule == "scaled_linear" and pipe.scheduler.config.beta_end == 0.012
    assert np.isfinite(_run(pipe)).all()


def test_projection_registers_its_sizes(tmp_path):
    module = CameraProjection(36, 32)
    module.save_pretrained(tmp_path / "proj")
    cfg = json.loads((tmp_path / "proj" / "config.json").read_text())
    assert (cfg["in_features"], cfg["out_features"]) == (36, 32)
    again = CameraProjection.from_pretrained(tmp_path / "proj")
    assert again.linear.weight.shape == (32, 36)
    identity = CameraProjection.identity_init(8)
    x = torch.randn(2, 1, 12)
    torch.testing.assert_close(identity(x), x[..., :8])


def test_writer_is_deterministic(tmp_path):
    a = save_tiny_zero123(tmp_path / "a", "kxic", seed=3)
    b = save_tiny_zero123(tmp_path / "b", "kxic", seed=3)
    c = save_tiny_zero123(tmp_path / "c", "kxic", seed=4)
    wa, wb, wc = (load_file(str(f / "unet/diffusion_pytorch_model.safetensors")) for f in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_real_size_architecture_matches_the_published_model():
    """UNet 860 M (8 input channels), CLIP ViT-L/14 304 M, VAE 84 M, built on the meta device (no memory)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionModelWithProjection

    from z123_ros.novel_views.testing import clip_config, unet_config, vae_config

    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config("real"))
        vae = AutoencoderKL(**vae_config("real"))
        clip = CLIPVisionModelWithProjection(clip_config("real"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 855e6 < count(unet) < 865e6
    assert 300e6 < count(clip) < 308e6
    assert 82e6 < count(vae) < 86e6
    assert unet.conv_in.in_channels == 8 and clip.config.projection_dim == 768


def test_pipeline_from_pretrained_goes_through_our_loader():
    from z123_ros.novel_views import Zero123Pipeline

    pipe = Zero123Pipeline.from_pretrained(tiny_model("diffusers"), torch_dtype=torch.bfloat16, progress_bar=False)
    assert isinstance(pipe, Zero123Pipeline) and pipe.unet.dtype == torch.bfloat16
    with pytest.raises(ModelLoadError):
        Zero123Pipeline.from_pretrained("/nonexistent/model")
