"""The guidance's text conditioning is what diffusers' own pipelines compute: ``IFPipeline.encode_prompt``
for DeepFloyd IF, ``StableDiffusionPipeline.encode_prompt`` for Stable Diffusion (incl. ``clip_skip``),
prompt and unconditional, with the view suffixes, in the same dtype; and in one run of the IF preset
both encoders at once: CLIP for the mapping network, T5 for the teacher (App. B.1.3). Tiny pipelines
with real tokenizer types (tiny_pipelines.py), no network."""
from __future__ import annotations

import pytest
import torch
from tiny_pipelines import clip_like, if_like, sd_like

from backend.text_encoder import TextEncoder
from training.guidance import GuidanceConfig, LatentDiffusionGuidance, PixelDiffusionGuidance, view_prompt

PROMPTS = ["a red cube", "A DSLR photo of a pig riding a bicycle", "  a blue sphere made out of gold "]
VIEWS = ["front", "side", "back"]


@pytest.fixture(scope="module")
def if_root(tmp_path_factory):
    return if_like(tmp_path_factory.mktemp("if_parity"))


@pytest.fixture(scope="module")
def sd_root(tmp_path_factory):
    return sd_like(tmp_path_factory.mktemp("sd_parity"))


def _if_pipeline(root, dtype):
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, T5EncoderModel

    return IFPipeline(tokenizer=AutoTokenizer.from_pretrained(root / "tokenizer"),
                      text_encoder=T5EncoderModel.from_pretrained(root / "text_encoder", dtype=dtype),
                      unet=UNet2DConditionModel.from_pretrained(root / "unet", dtype=dtype),
                      scheduler=DDPMScheduler.from_pretrained(root / "scheduler"),
                      safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)


@pytest.fixture
def diffusers_clip_skip(monkeypatch):
    """diffusers' clip_skip reads ``text_encoder.text_model.final_layer_norm``, which transformers ≥ 5.6
    flattened away (huggingface/diffusers#14124, open): give the reference its old path back."""
    from transformers import CLIPTextModel

    if not hasattr(CLIPTextModel, "text_model"):
        monkeypatch.setattr(CLIPTextModel, "text_model", property(lambda self: self), raising=False)


def _sd_pipeline(root, dtype, text_root=None):
    """SD's pipeline from ``root``; with ``text_root``, its CLIP text encoder and tokenizer from that folder."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    text, tok = (text_root, text_root) if text_root else (root / "text_encoder", root / "tokenizer")
    return StableDiffusionPipeline(vae=AutoencoderKL.from_pretrained(root / "vae", dtype=dtype),
                                   text_encoder=CLIPTextModel.from_pretrained(text, dtype=dtype),
                                   tokenizer=AutoTokenizer.from_pretrained(tok),
                                   unet=UNet2DConditionModel.from_pretrained(root / "unet", dtype=dtype),
                                   scheduler=PNDMScheduler.from_pretrained(root / "scheduler"),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _guidance(kind, root, dtype_name, tmp_path, **kw):
    cfg = GuidanceConfig(kind=kind, model=str(root), dtype=dtype_name, text_dtype=dtype_name, vae_resolution=16, **kw)

    cls = PixelDiffusionGuidance if kind == "pixel" else LatentDiffusionGuidance
    return cls(cfg, "cpu", cache_dir=tmp_path)  # a fresh cache: nothing comes from an earlier test


@pytest.mark.parametrize("dtype_name,dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_if_encode_prompt_parity(if_root, tmp_path, dtype_name, dtype):
    pipe = _if_pipeline(if_root, dtype)
    g = _guidance("pixel", if_root, dtype_name, tmp_path)
    assert g.encoder.kind == "t5" and g.encoder.dtype == dtype
    want, want_neg = pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=True, device=torch.device("cpu"))
    ours = g.embed(PROMPTS)
    assert ours.dtype == want.dtype == dtype and ours.shape == want.shape == (3, 77, 16)
    assert torch.equal(ours, want)  # bit for bit
    assert torch.equal(g.uncond(3), want_neg)
    # IF lowercases: the capitalised prompt is the lowercase one, not <unk> tokens
    assert torch.equal(g.embed(["a dslr photo of a pig riding a bicycle"])[0], ours[1])
    # padding positions are the encoder's raw outputs (diffusers does not zero them)
    assert ours[0, -1].abs().sum() > 0 and not torch.equal(ours[0, -1], torch.zeros_like(ours[0, -1]))
    # the view-dependent guidance prompts, as the training modes ask for them
    views = g.prompts_for(PROMPTS, VIEWS)
    assert views[0] == view_prompt(PROMPTS[0], "front") == "a red cube, front view"
    want_v, _ = pipe.encode_prompt(views, do_classifier_free_guidance=True, device=torch.device("cpu"))
    assert torch.equal(g.embed(views), want_v)
    assert not torch.equal(want_v[0], want[0])


def test_if_encode_prompt_parity_negative_prompt(if_root, tmp_path):
    pipe = _if_pipeline(if_root, torch.float32)
    g = _guidance("pixel", if_root, "float32", tmp_path, negative_prompt="ugly, blurry")
    _, want_neg = pipe.encode_prompt(PROMPTS[:2], device=torch.device("cpu"), negative_prompt=["ugly, blurry"] * 2)
    assert torch.equal(g.uncond(2), want_neg)


@pytest.mark.parametrize("clip_skip", [0, 1, 2])
@pytest.mark.parametrize("dtype_name,dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_sd_encode_prompt_parity(sd_root, tmp_path, clip_skip, dtype_name, dtype, diffusers_clip_skip):
    pipe = _sd_pipeline(sd_root, dtype)
    g = _guidance("latent", sd_root, dtype_name, tmp_path, clip_skip=clip_skip)
    assert g.encoder.kind == "clip" and g.encoder.clip_skip == clip_skip
    want, want_neg = pipe.encode_prompt(PROMPTS, torch.device("cpu"), 1, True, clip_skip=clip_skip or None)
    ours = g.embed(PROMPTS)
    assert ours.dtype == want.dtype == dtype and ours.shape == want.shape == (3, 77, 16)
    assert torch.equal(ours, want)
    assert torch.equal(g.uncond(3), want_neg)  # (diffusers encodes the negative prompt without clip_skip)
    views = g.prompts_for(PROMPTS, VIEWS)
    want_v, _ = pipe.encode_prompt(views, torch.device("cpu"), 1, True, clip_skip=clip_skip or None)
    assert torch.equal(g.embed(views), want_v)


def test_sd_clip_skip_changes_the_conditioning(sd_root, tmp_path):
    """The parity above is not vacuous: clip_skip and the prompt both change what the UNet reads."""
    a = _guidance("latent", sd_root, "float32", tmp_path / "a").embed(PROMPTS)
    b = _guidance("latent", sd_root, "float32", tmp_path / "b", clip_skip=1).embed(PROMPTS)
    assert (a - b).abs().max() > 1e-3
    assert (a[0] - a[2]).abs().max() > 1e-3


def test_conditioning_is_cached_per_clip_skip_and_survives_release(sd_root, tmp_path, diffusers_clip_skip):
    g = _guidance("latent", sd_root, "float32", tmp_path, clip_skip=1)
    n = g.precompute(["a red cube"])
    assert n == 5 and g.encoder._model is None  # 4 views + the negative prompt, then the encoder is freed
    fresh = _guidance("latent", sd_root, "float32", tmp_path, clip_skip=1)
    got = fresh.embed(["a red cube, side view"])
    assert fresh.encoder._model is None  # from the on-disk cache
    pipe = _sd_pipeline(sd_root, torch.float32)
    want, _ = pipe.encode_prompt(["a red cube, side view"], torch.device("cpu"), 1, True, clip_skip=1)
    assert torch.equal(got, want)
    other = _guidance("latent", sd_root, "float32", tmp_path)  # clip_skip 0 must not read clip_skip 1's entries
    assert not torch.equal(other.embed(["a red cube, side view"]), want)


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory):
    return clip_like(tmp_path_factory.mktemp("clip_mapping"))


def _if_preset(if_root, clip_root, device: str, dtype: str, steps: int = 1):
    """df415_if.toml on tiny stand-ins of its three hub models (the same layouts: an IF pipeline folder
    whose text_encoder/ conditions the teacher, a whole CLIP model folder for the mapping network)."""
    from training.config import load_config, preset_path

    cfg = load_config(preset_path("df415_if"))
    assert (cfg.model.text_encoder, cfg.model.max_length) == ("openai/clip-vit-large-patch14", 77)
    assert cfg.guidance.text_encoder == f"{cfg.guidance.model}#text_encoder"  # IF's own T5
    cfg.guidance.model, cfg.guidance.text_encoder = str(if_root), f"{if_root}#text_encoder"
    cfg.guidance.dtype = cfg.guidance.text_dtype = dtype
    cfg.model.text_encoder, cfg.model.resolutions = str(clip_root), [4, 6]
    cfg.prompts.set, cfg.prompts.list = "", PROMPTS
    cfg.run.steps, cfg.run.batch_size, cfg.run.device, cfg.run.preview_every = steps, 2, device, 0
    cfg.render.height = cfg.render.width = 12
    cfg.render.n_samples = 8
    cfg.eval.clip_model = ""
    return cfg.validate()


def test_if_preset_run_conditions_the_mapping_on_clip_and_the_teacher_on_t5(if_root, clip_root, sd_root, tmp_path):
    """One run of df415_if.toml (its teacher, text encoders and mapping input; the models tiny): the mapping
    network reads what ``StableDiffusionPipeline.encode_prompt`` gives with that CLIP — the paper's CLIP
    embedding, without view suffixes — while the IF guidance reads ``IFPipeline.encode_prompt``'s T5
    conditioning; the model folder names the CLIP encoder, and inference embeds new prompts with it."""
    from transformers import AutoTokenizer, CLIPModel

    from backend.engine import Engine
    from backend.inference import Pipeline
    from training.loop import Trainer

    trainer = Trainer(_if_preset(if_root, clip_root, "cpu", "float32"), tmp_path / "run", progress=False)
    mapping, g = trainer.mode.encoder, trainer.guidance
    assert (mapping.kind, mapping.dim, mapping.max_length, mapping.dtype) == ("clip", 24, 77, torch.float32)
    assert (g.encoder.kind, g.encoder.dim) == ("t5", 16)
    assert mapping._model is None and g.encoder._model is None  # both freed before the first step

    prompts = trainer.mode.prompts
    assert prompts == [p.strip() for p in PROMPTS]  # (a prompt set strips its prompts)
    # the mapping network's input: SD's encode_prompt with this CLIP, on the prompts themselves
    sd = _sd_pipeline(sd_root, torch.float32, text_root=clip_root)
    want_map, _ = sd.encode_prompt(prompts, torch.device("cpu"), 1, True)
    assert trainer.mode.tokens.shape == want_map.shape == (3, 77, 24)
    assert torch.equal(trainer.mode.tokens, want_map)
    # (the text tower of the whole CLIP checkpoint, not a randomly initialised one)
    ids = AutoTokenizer.from_pretrained(clip_root)(prompts, padding="max_length", max_length=77,
                                                     return_tensors="pt").input_ids
    with torch.no_grad():
        tower = CLIPModel.from_pretrained(clip_root).text_model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(trainer.mode.tokens, tower, rtol=0, atol=1e-6)

    # the teacher's: IF's T5 conditioning, with the view suffixes, and its unconditional prompt
    pipe = _if_pipeline(if_root, torch.float32)
    views = g.prompts_for(prompts, VIEWS)
    want_v, want_neg = pipe.encode_prompt(views, do_classifier_free_guidance=True, device=torch.device("cpu"))
    assert torch.equal(g.embed(views), want_v) and torch.equal(g.uncond(3), want_neg)
    batch = trainer.mode.batch(0, torch.Generator().manual_seed(0))  # what a training step feeds each
    assert batch.tokens.shape[1:] == (77, 24) and batch.conds[0].shape[1:] == (77, 16)
    assert torch.equal(batch.tokens, torch.stack([want_map[prompts.index(p)] for p in batch.prompts]))
    seen = [view_prompt(p, v) for p, v in zip(batch.prompts, batch.views)]
    assert all(batch.views) and torch.equal(batch.conds[0], pipe.encode_prompt(seen, device=torch.device("cpu"))[0])

    # the model: a mapping network of CLIP's size (its first linear reads 77 × 24, not 77 × 16)
    arch = trainer.model.config
    assert (arch.text_encoder, arch.max_length, arch.token_dim) == (str(clip_root), 77, 24)
    assert trainer.model.mapping.to_v.weight.shape[1] == 77 * 24
    result = trainer.run()
    assert result.step == 1 and all(torch.isfinite(torch.tensor(result.losses)))
    inference = Pipeline(str(result.model_dir), device="cpu")
    assert inference.encoder.kind == "clip" and inference.encoder.encoder_id == str(clip_root)
    assert torch.equal(inference.encoder(prompts, use_cache=False).tokens, want_map)
    assert len(Engine(inference).generate("a green cone", resolution=16).positions) > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (training/gpu_check.sh)")
def test_if_preset_run_on_cuda(if_root, clip_root, tmp_path):
    """The same run on a GPU with the preset's dtypes (auto: the UNet in fp16, T5 in bf16): the mapping
    encoder embeds on the GPU in float32, the tokens the CPU gives; two steps train."""
    from training.loop import Trainer

    trainer = Trainer(_if_preset(if_root, clip_root, "cuda", "auto", steps=2), tmp_path / "run", progress=False)
    mapping, g = trainer.mode.encoder, trainer.guidance
    assert (mapping.device.type, mapping.dtype, g.encoder.device.type) == ("cuda", torch.float32, "cuda")
    assert g.dtype == torch.float16 and g.encoder.dtype in (torch.bfloat16, torch.float16)
    on_cpu = TextEncoder(str(clip_root), 77, device="cpu", dtype=torch.float32, cache_dir=tmp_path / "cpu")
    torch.testing.assert_close(trainer.mode.tokens.cpu(), on_cpu(trainer.mode.prompts, use_cache=False).tokens,
                               rtol=1e-4, atol=1e-5)
    result = trainer.run()
    assert result.step == 2 and all(torch.isfinite(torch.tensor(result.losses)))
