import os
import tempfile
from pathlib import Path

import pytest

# Keep every test's caches out of the user's home, and never reach a model hub.
_CACHE = tempfile.mkdtemp(prefix="att3d-test-cache-")
os.environ.setdefault("ATT3D_CACHE", _CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small randomly initialised model folder with the real MiniLM text encoder."""
    from backend.model import ModelConfig, build_model, save_model

    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(build_model(ModelConfig(resolutions=[8, 12, 16, 24], v_dim=8), seed=0), folder,
               {"name": "tiny", "prompts": ["a red cube", "a blue sphere"]})
    return folder


@pytest.fixture(scope="session")
def pipeline(tiny_model_dir):
    from backend.inference import Pipeline

    return Pipeline(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def engine(pipeline):
    """The operations (backend/engine.py) on the tiny model (tests/service and tests/studio have their own)."""
    from backend.engine import Engine

    return Engine(pipeline)


# Fixtures that start a backend process (a cold start of torch and the model: seconds each) or build
# the extension zip. A test that uses one is `slow`: `make test-fast` leaves it out, `make test` and CI
# run it.
_PROCESS_FIXTURES = {"server", "start_own_server", "launch", "built_zip", "studio_cluster"}


@pytest.fixture(scope="session")
def studio_cluster():
    """A local Ray instance (2 CPUs, 200 MB object store, no dashboard) for the ``att3d studio`` tests:
    ``studio_cluster.deploy(model, users, **settings)`` -> a :class:`studio_harness.Studio`."""
    from studio_harness import StudioCluster

    cluster = StudioCluster().start()
    yield cluster
    cluster.stop()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
