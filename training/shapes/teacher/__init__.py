"""The teacher: a small pixel-space text-conditional DDPM that plays the pretrained text-to-image model
for the Shapes world.

A diffusers ``UNet2DConditionModel`` at 32×32 (RGB in [−1, 1], v-prediction with min-SNR-5 loss
weighting by default, cosine ``DDPMScheduler``) conditioned by cross-attention on MiniLM token embeddings
(``backend.text_encoder.TextEncoder("minilm")``, 32 × 384, padding zeroed, exactly what the text
encoder returns), with classifier-free dropout (10 % of captions replaced by the empty prompt) so
guidance works. It trains on ground-truth renders of **all** world prompts from the world's training
camera distribution, captioned with the view (``"…, front view"``).

The trained folder is a diffusers-style pipeline folder that pixel guidance loads by path, the same
code path as DeepFloyd IF::

    DIR/unet/{config.json,diffusion_pytorch_model.safetensors}   (EMA weights)
    DIR/scheduler/scheduler_config.json
    DIR/att3d_teacher.json      {"text_encoder": "minilm", "max_length": 32, "image_size": 32, ...}
    DIR/checkpoint/             resumable training state (safetensors + JSON, no pickles)

One module per concern: ``config`` (the recipe and the networks it builds), ``loss`` (the denoising
loss), ``data`` (cached GT renders and caption embeddings), ``checkpoint`` (resumable state),
``folder`` (the pipeline folder: export, ship, load), ``train`` (the loop), ``sampling`` (DDIM) and
``report`` (does the teacher know the world?).
"""
from training.guidance import TEACHER_JSON

from ..cache import DEFAULT_DATA_DIR
from .checkpoint import load_checkpoint, read_checkpoint_state, save_checkpoint
from .config import (
    TRAINABLE_PREDICTION_TYPES,
    TeacherConfig,
    build_scheduler,
    build_unet,
    check_trainable_prediction_type,
    config_dict,
    config_from_dict,
)
from .data import all_captions, caption_ids, data_paths, ensure_caption_embeddings, prepare_data
from .folder import SHIPPED_TEACHER, export_teacher, load_teacher, resolve_teacher, ship_teacher
from .loss import diffusion_loss
from .report import REPORT_VIEW_SEED, REPORT_VIEWS, nearest_prompts, report_cameras, report_gallery, teacher_report
from .sampling import sample
from .train import train_teacher

__all__ = [
    "DEFAULT_DATA_DIR", "REPORT_VIEWS", "REPORT_VIEW_SEED", "SHIPPED_TEACHER", "TEACHER_JSON",
    "TRAINABLE_PREDICTION_TYPES", "TeacherConfig", "all_captions", "build_scheduler", "build_unet", "caption_ids",
    "check_trainable_prediction_type", "config_dict", "config_from_dict", "data_paths", "diffusion_loss",
    "ensure_caption_embeddings", "export_teacher", "load_checkpoint", "load_teacher", "nearest_prompts",
    "prepare_data", "read_checkpoint_state", "report_cameras", "report_gallery", "resolve_teacher", "sample",
    "save_checkpoint", "ship_teacher", "teacher_report", "train_teacher",
]
