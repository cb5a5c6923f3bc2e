"""ATT3D training: guidance (``guidance/``), prompt sets, the loop (``loop.py``) and its modes
(``modes/``: amortized, interpolation, per-prompt, finetune), evaluation (CLIP R-precision) and
plots; ``train.train`` is the entry point. Imports ``backend``, never ``bpy``."""
