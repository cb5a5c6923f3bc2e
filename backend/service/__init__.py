"""``att3d serve``: the local inference service (FastAPI + uvicorn) the Blender add-on talks to.

Modules: :mod:`.server` (start-up, ready line, signals), :mod:`.app` (the HTTP API),
:mod:`.worker` (the job queue and its one worker thread), :mod:`.engine` (the loaded model and the
operations on it, shared with the embedded client), :mod:`.schemas` (request bodies), :mod:`.auth`
(the token), :mod:`.bench` (``python -m backend.service.bench``). The protocol itself (routes, job
states, limits, payload, ready line, token location) is :mod:`blender_att3d.wire`, the only part of
the add-on package imported here.
"""
