"""The backend's life cycle, from the add-on's side: which local backend to use
(:mod:`.local_backend`), installing one (:mod:`.setup_backend`, the stdlib-only installer, run by
:mod:`.setup_job` in a subprocess; its operators in :mod:`.operators`), the shared client and its
settings (:mod:`.session`) and starting it ahead of time (:mod:`.prestart`).

No bpy at import here, nor in ``session``, ``local_backend``, ``setup_backend`` and ``setup_job``
(tests/blender/test_imports.py); ``operators`` and ``prestart`` are registered by :mod:`blender_att3d.addon`.
"""
