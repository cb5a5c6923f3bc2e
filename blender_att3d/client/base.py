"""The one client interface the add-on and batch jobs use, whatever the transport."""
from __future__ import annotations

import abc
from collections.abc import Sequence

from ..wire.limits import DEFAULT_RESOLUTION, Limits
from ..wire.types import MeshData, Neighbors, ProgressFn, SequenceData, ServerInfo


class BackendError(RuntimeError):
    """Something went wrong in the backend; the message is meant for an artist to read."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached or did not start."""


class InvalidRequest(BackendError):
    """The request itself is wrong (empty prompt, resolution out of range ...)."""


class Cancelled(BackendError):
    """The job was cancelled."""


class Client(abc.ABC):
    """generate / chain / blend / nearest / info / cancel.

    ``progress`` callbacks may be called from the thread running the job.
    """

    #: The limits of the backend this client talks to (prompt length, resolutions ...): a server's
    #: own, read from ``GET /v1/info``, for the HTTP clients; this version's for the embedded one.
    limits: Limits = Limits()

    @abc.abstractmethod
    def info(self) -> ServerInfo:
        """Who answers: model, device, versions, the server's limits (``transport``: how)."""

    @abc.abstractmethod
    def generate(self, prompt: str, resolution: int = DEFAULT_RESOLUTION, simplify: int | None = None,
                 texture: bool = False, progress: ProgressFn | None = None, mc: str = "auto") -> MeshData:
        """``mc``: the marching cubes, one of ``wire.options.MC_METHODS``."""

    @abc.abstractmethod
    def chain(self, keyframes: Sequence[tuple[float, str]], steps: int = 4, resolution: int = DEFAULT_RESOLUTION,
              consistent: bool = True, progress: ProgressFn | None = None,
              max_states: int | None = None) -> SequenceData:
        """``keyframes``: (position, prompt) pairs; ``steps`` meshes between consecutive keyframes;
        ``max_states``: a consistent chain's stored states per segment at most (in between where the
        surface moves; None: the backend's default, ``2 · steps``). The result's ``meta`` holds
        ``max_move_voxels``, the largest vertex move between neighbouring stored states (voxels)."""

    @abc.abstractmethod
    def blend(self, prompt_a: str, prompt_b: str, alpha: float, resolution: int = DEFAULT_RESOLUTION,
              progress: ProgressFn | None = None) -> MeshData: ...

    @abc.abstractmethod
    def nearest(self, prompt: str, k: int = 5) -> Neighbors:
        """How close ``prompt`` is to what the model was trained on (``backend/nearest.py``; what the
        answer holds: :class:`~blender_att3d.wire.types.Neighbors`)."""

    @abc.abstractmethod
    def cancel(self) -> None: ...

    def close(self) -> None:  # noqa: B027 (a default no-op: not every transport holds something)
        """Release resources (stop a server subprocess the client started)."""
