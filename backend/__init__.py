"""ATT3D backend: text → mapping network → voxel grid → NeRF → renders and meshes (pure PyTorch)."""
__version__ = "0.1.0"
