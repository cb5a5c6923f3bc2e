"""The ``att3d studio`` subcommand (registered by :mod:`backend.cli`)."""
from __future__ import annotations

import argparse


def cmd_studio(args: argparse.Namespace) -> int:
    # errors are ValueErrors, which `att3d` prints as one line (under `python -m backend.cli` the running
    # module's CLIError is another class than the one an import of backend.cli would give)
    if args.add_user:
        from .users import add_user

        if not args.tokens:
            raise ValueError("--add-user needs --tokens FILE (the tokens file to add the user to)")
        try:
            token = add_user(args.tokens, args.add_user)
        except ValueError as e:
            raise ValueError(str(e)) from None
        print(token)
        return 0
    try:
        from .server import require_ray

        require_ray()
        import fastapi  # noqa: F401
    except ImportError as e:
        raise ValueError(str(e) if "att3d[studio]" in str(e) else
                       f"`att3d studio` needs {e.name}: pip install 'att3d[studio]'") from None
    if (args.min_replicas is None) != (args.max_replicas is None):
        raise ValueError("--min-replicas and --max-replicas go together (autoscaling bounds)")
    if args.min_replicas is not None and not 0 <= args.min_replicas <= args.max_replicas:
        raise ValueError("autoscaling bounds need 0 <= --min-replicas <= --max-replicas")
    for name in ("replicas", "batch_size", "max_queue", "max_queue_per_user", "ingress_replicas"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.retries not in (0, 1):
        raise ValueError("--retries must be 0 or 1")
    from .deployments import Settings
    from .server import studio

    settings = Settings(model=args.model, device=args.device, replicas=args.replicas, min_replicas=args.min_replicas,
                        max_replicas=args.max_replicas, replica_cpus=args.replica_cpus,
                        replica_gpus=args.replica_gpus, threads=args.threads, batch_size=args.batch_size,
                        batch_wait_s=args.batch_wait_ms / 1000, max_queue=args.max_queue,
                        max_queue_per_user=args.max_queue_per_user, retries=args.retries,
                        ingress_replicas=args.ingress_replicas, allow_hosts=list(args.allow_host or ()))
    return studio(settings, host=args.host, port=args.port, allow_remote=args.allow_remote,
                  token_file=args.token_file, rotate_token=args.rotate_token, tokens_file=args.tokens,
                  address=args.address, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                  object_store_mb=args.object_store_mb, log_level=args.log_level)


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "studio", help="serve the add-on's API to many artists on Ray Serve (replicas, fair queues)",
        description="The /v1 API of `att3d serve` on a Ray Serve application: model replicas on one or many "
                    "machines, per-user tokens and fair queues, batching, metrics. Prints 'ATT3D_READY {json}' on "
                    "stdout when it accepts requests. See docs/studio.md.")
    s.add_argument("--model", default="demo", help="model folder or shipped name (default: demo)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda (each replica's device)")
    s.add_argument("--host", default="127.0.0.1", help="address of the HTTP proxy (default: loopback only)")
    s.add_argument("--port", type=int, default=0, help="port (default 0: a free one, see the ready line)")
    s.add_argument("--allow-remote", action="store_true",
                   help="allow listening on a non-loopback address (clients need a token)")
    s.add_argument("--allow-host", action="append", metavar="NAME",
                   help="also answer requests addressed to this host name (repeatable; '*' for any, e.g. behind "
                        "a reverse proxy)")
    auth = s.add_argument_group("users")
    auth.add_argument("--tokens", metavar="FILE", help="tokens file: one 'name token' per line, mode 0600 (without "
                                                       "it: one token, as att3d serve)")
    auth.add_argument("--add-user", metavar="NAME", help="add NAME with a new token to --tokens FILE, print the "
                                                         "token, and exit")
    auth.add_argument("--token-file", help="the single token's file (default: the user data folder); ATT3D_TOKEN "
                                           "overrides")
    auth.add_argument("--rotate-token", action="store_true", help="write a new single token even if one exists")
    rep = s.add_argument_group("replicas")
    rep.add_argument("--replicas", type=int, default=1, help="model replicas (default 1)")
    rep.add_argument("--min-replicas", type=int, help="autoscaling: at least this many replicas")
    rep.add_argument("--max-replicas", type=int, help="autoscaling: at most this many replicas")
    rep.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica (default 1)")
    rep.add_argument("--replica-gpus", type=float, default=0.0,
                     help="GPUs per replica: 1, or a share such as 0.5 for two replicas on one GPU (default 0)")
    rep.add_argument("--threads", type=int, help="torch CPU threads per replica (default: Ray's, the replica's CPUs)")
    rep.add_argument("--batch-size", type=int, default=1,
                     help="jobs a replica takes at once; generate jobs in one batch share a mapping-network pass "
                          "(default 1: results bit-identical to att3d serve's)")
    rep.add_argument("--batch-wait-ms", type=float, default=10.0, help="how long a batch waits to fill (default 10)")
    rep.add_argument("--ingress-replicas", type=int, default=1, help="HTTP ingress replicas (default 1)")
    q = s.add_argument_group("queues")
    q.add_argument("--max-queue", type=int, default=256, help="jobs waiting in all before requests get 503")
    q.add_argument("--max-queue-per-user", type=int, default=64,
                   help="jobs one user may have waiting or running before their requests get 429 (default 64)")
    q.add_argument("--retries", type=int, default=0, choices=[0, 1],
                   help="run a job again once when its replica dies (default 0: fail it with a clear error)")
    c = s.add_argument_group("cluster")
    c.add_argument("--address", help="join this Ray cluster (e.g. 10.0.0.5:6379, or 'auto') instead of starting "
                                     "a local Ray instance")
    c.add_argument("--num-cpus", type=int, help="local Ray instance: CPUs it may use (default: all)")
    c.add_argument("--num-gpus", type=int, help="local Ray instance: GPUs it may use (default: all)")
    c.add_argument("--object-store-mb", type=int, default=200, help="local Ray instance: object store size (MB)")
    s.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_studio)
