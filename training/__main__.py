"""``python -m training [train] --config FILE --out DIR ...``, the entry point for torchrun::

    torchrun --nproc_per_node=8 -m training --config training/configs/df415_if.toml --out runs/df415

Each process joins the process group (NCCL on GPUs, gloo on CPU), trains on its shard of the
prompts with DistributedDataParallel, and only rank 0 writes.
"""
import sys

from backend.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv or argv[0] not in ("train", "eval", "plot"):
        argv = ["train", *argv]
    sys.exit(main(argv))
