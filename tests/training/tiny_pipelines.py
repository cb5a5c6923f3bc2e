"""Tiny diffusers pipeline folders with real tokenizer types, built offline for the tests.

- a T5 / SentencePiece-style (Unigram) tokenizer, as DeepFloyd IF's ``tokenizer/``;
- a CLIP byte-level BPE tokenizer (vocab + merges), as Stable Diffusion's ``tokenizer/``;
- IF-like (``unet/`` with ``encoder_hid_dim``, ``scheduler/``, ``text_encoder/`` T5, ``tokenizer/``) and
  SD-like (``unet/``, ``vae/``, ``scheduler/``, ``text_encoder/`` CLIP, ``tokenizer/``) folders that
  ``IFPipeline`` / ``StableDiffusionPipeline`` and our guidance both load;
- a whole CLIP model folder (text and vision towers), as ``openai/clip-vit-large-patch14``.

The vocabularies cover the words of the test prompts, so different prompts get different token ids
(a BERT tokenizer under a T5 model, as before, says nothing about IF's conditioning).
"""
from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("a an the red blue green yellow pink purple black orange cube sphere cone torus cat dog pig "
         "wearing party hat riding bicycle made out of gold dslr photo front side back overhead view "
         "ugly blurry").split()


def t5_tokenizer(words=WORDS):
    """A Unigram tokenizer with T5's layout: <pad> 0, </s> 1, <unk> 2, "▁", one piece per word, letters."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -3.0 - 0.01 * i) for i, w in enumerate(sorted(set(words)))]
    vocab += [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz,."]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def clip_tokenizer(words=WORDS, model_max_length: int = 77):
    """A byte-level BPE tokenizer with CLIP's layout: 256 byte symbols, the same with ``</w>``, one merge
    chain per word, then <|startoftext|> and <|endoftext|> (the pad token, as SD 1.5's tokenizer)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    base = ByteLevel.alphabet()
    vocab: dict[str, int] = {}
    for s in sorted(base) + sorted(b + "</w>" for b in base):
        vocab.setdefault(s, len(vocab))
    merges: list[tuple[str, str]] = []
    for w in words:
        syms = list(w[:-1]) + [w[-1] + "</w>"]
        while len(syms) > 1:
            if (syms[0], syms[1]) not in merges:
                merges.append((syms[0], syms[1]))
            vocab.setdefault(syms[0] + syms[1], len(vocab))
            syms = [syms[0] + syms[1]] + syms[2:]
    for s in ("<|startoftext|>", "<|endoftext|>"):
        vocab[s] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def if_like(root: Path, d_model: int = 16, image_size: int = 16, seed: int = 1) -> Path:
    """``unet/`` (IF-like: ``encoder_hid_dim``, ε + variance), ``scheduler/``, ``text_encoder/`` (T5),
    ``tokenizer/``."""
    from diffusers import DDPMScheduler
    from transformers import T5Config, T5EncoderModel

    from training.guidance import tiny_unet

    tok = t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        t5 = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=d_model, d_kv=4, d_ff=32, num_layers=2,
                                     num_heads=2, pad_token_id=0, eos_token_id=1))
    t5.save_pretrained(root / "text_encoder")
    tok.save_pretrained(root / "tokenizer")
    tiny_unet(image_size, token_dim=d_model, seed=seed).save_pretrained(root / "unet")
    DDPMScheduler(num_train_timesteps=1000, variance_type="learned_range").save_pretrained(root / "scheduler")
    return root


def sd_like(root: Path, hidden: int = 16, seed: int = 1) -> Path:
    """``unet/`` (4 latent channels), ``vae/``, ``scheduler/`` (PNDM, as SD ships), ``text_encoder/`` (a
    3-layer CLIP, so that ``clip_skip`` has layers to skip), ``tokenizer/``."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=32, num_hidden_layers=3,
                              num_attention_heads=2, max_position_embeddings=77,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)
        CLIPTextModel(clip).save_pretrained(root / "text_encoder")
        tok.save_pretrained(root / "tokenizer")
        UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                             block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                             up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=4,
                             norm_num_groups=4, cross_attention_dim=hidden).save_pretrained(root / "unet")
        AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                      down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                      norm_num_groups=4, sample_size=16, scaling_factor=0.5).save_pretrained(root / "vae")
    PNDMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                  beta_end=0.012).save_pretrained(root / "scheduler")
    return root


def clip_like(root: Path, hidden: int = 24, seed: int = 3) -> Path:
    """A whole CLIP model folder laid out as ``openai/clip-vit-large-patch14`` (the IF preset's mapping
    encoder): ``config.json`` of model_type ``clip`` with a text and a vision tower and their projections,
    ``model.safetensors`` holding both towers, and the CLIP tokenizer beside them. ``hidden`` differs from
    the T5 of :func:`if_like` (16), so a token width tells the two encoders apart."""
    from transformers import CLIPConfig, CLIPModel

    tok = clip_tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(root)
    tok.save_pretrained(root)
    return root
