"""ATT3D training: SDS guidance, prompt sets, the amortized / interpolation / per-prompt /
finetuning loops, evaluation (CLIP R-precision) and plots. Imports ``backend``, never ``bpy``."""
