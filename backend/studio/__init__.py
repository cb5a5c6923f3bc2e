"""``att3d studio``: the ``/v1`` API of ``att3d serve`` on a Ray Serve application, for many artists on
one or many GPU machines.

Modules: :mod:`.fair` (per-user queues served round-robin), :mod:`.users` (the tokens file),
:mod:`.store` (job state, the fair queue and the dispatcher; plain asyncio, no Ray),
:mod:`.deployments` (the Serve deployments: ingress, job store, model replicas), :mod:`.server`
(start-up, ready line, signals, shutdown), :mod:`.cli` (the subcommand), :mod:`.bench`
(``python -m backend.studio.bench``). The routes, job semantics and operations are
:mod:`backend.service`'s (``create_app``, ``Job``/``run_operation``, ``engine``), not copies.
"""
