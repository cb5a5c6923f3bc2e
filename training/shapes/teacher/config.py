"""The teacher's recipe (:class:`TeacherConfig`) and the diffusers UNet and noise schedule it builds."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DConditionModel

# What the teacher can be *trained* to predict: a subset of what the guidance can read
# (``training.guidance.PREDICTION_TYPES`` also has "sample", which :func:`diffusion_loss` has no target for).
TRAINABLE_PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass
class TeacherConfig:
    image_size: int = 32
    block_out_channels: tuple = (32, 64, 64)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 16
    text_encoder: str = "minilm"
    max_length: int = 32
    token_dim: int = 384
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # what the UNet predicts: "v_prediction" predicts the image itself at high noise, so a small,
    # briefly trained model gets the layout, size and background right; the first teacher was
    # "epsilon" and after 8000 CPU steps still drew oversized objects on tinted backgrounds (500 steps
    # of fine-tuning it into v fixed that: nearest-GT accuracy 0.17 → 0.83 on 24 prompts, CFG 1)
    prediction_type: str = "v_prediction"
    # min-SNR-γ loss weighting (Hang et al. 2023; 0 = off): stops the many nearly noise-free
    # timesteps from dominating the gradient
    snr_gamma: float = 5.0
    # training
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.0
    cond_dropout: float = 0.1
    ema_decay: float = 0.995
    seed: int = 0
    # fine-tuning on a world that grew: this share of every batch is drawn from the images of the
    # prompts whose text contains one of the ``focus`` phrases (e.g. "tree", "an orange"), the rest
    # from all images as usual, so the new prompts are learnt without forgetting the old ones
    focus: tuple = ()
    focus_share: float = 0.0
    # data
    views_per_prompt: int = 8
    n_samples: int = 48


def check_trainable_prediction_type(prediction_type: str) -> None:
    if prediction_type not in TRAINABLE_PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {prediction_type!r} for training the teacher; "
                         f"choose {', '.join(TRAINABLE_PREDICTION_TYPES)}")


def config_dict(cfg: TeacherConfig) -> dict[str, Any]:
    """The config as JSON-ready values (as written into ``att3d_teacher.json`` and checkpoints)."""
    d = asdict(cfg)
    d["block_out_channels"] = list(cfg.block_out_channels)
    d["focus"] = list(cfg.focus)
    return d


def config_from_dict(d: dict[str, Any]) -> TeacherConfig:
    """The inverse of :func:`config_dict` (JSON turns the channel tuple into a list). Configs written
    before the recipe options existed were ε-prediction without loss weighting."""
    legacy = {"prediction_type": "epsilon", "snr_gamma": 0.0}
    return TeacherConfig(**{**legacy, **d, "block_out_channels": tuple(d["block_out_channels"]),
                            "focus": tuple(d.get("focus", ()))})


def build_unet(cfg: TeacherConfig) -> UNet2DConditionModel:
    from diffusers import UNet2DConditionModel

    n = len(cfg.block_out_channels)
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
    up = ("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",)
    return UNet2DConditionModel(sample_size=cfg.image_size, in_channels=3, out_channels=3,
                                block_out_channels=tuple(cfg.block_out_channels),
                                layers_per_block=cfg.layers_per_block, down_block_types=down, up_block_types=up,
                                cross_attention_dim=cfg.token_dim, attention_head_dim=cfg.attention_head_dim,
                                norm_num_groups=cfg.norm_num_groups)


def build_scheduler(cfg: TeacherConfig) -> DDPMScheduler:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=True)
