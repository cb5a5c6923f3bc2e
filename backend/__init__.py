"""ATT3D backend: text → mapping network → voxel grid → NeRF → renders and meshes (pure PyTorch)."""
__version__ = "0.1.0"

import os as _os

# OpenMP threads that wait at a barrier sleep instead of spinning. Set here, before anything imports
# torch (which loads OpenMP and reads it once); an explicit OMP_WAIT_POLICY wins. Spinning threads
# starve each other when the cores are shared (Blender beside the service, other jobs): the 128³
# density lattice took 7–9 s with the default policy and 0.31 s with PASSIVE on the 2-core
# development machine under load. Where torch was imported first (e.g. inside Blender) it does nothing.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
