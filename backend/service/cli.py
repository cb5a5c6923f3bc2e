"""The ``att3d serve`` subcommand (registered by :mod:`backend.cli`)."""
from __future__ import annotations

import argparse


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        from ..cli import CLIError

        raise CLIError(f"`att3d serve` needs {e.name}: pip install 'att3d[serve]'") from None
    from .server import serve

    return serve(model=args.model, host=args.host, port=args.port, device=args.device,
                 allow_remote=args.allow_remote, token_file=args.token_file, rotate_token=args.rotate_token,
                 max_queue=args.max_queue, threads=args.threads, log_level=args.log_level,
                 parent_pid=args.parent_pid, allow_hosts=args.allow_host or ())


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "serve", help="run the local inference service (HTTP, for the Blender add-on)",
        description="Load the model once and serve generate / chain / blend / nearest over HTTP. Prints one "
                    "line 'ATT3D_READY {json}' on stdout when it accepts requests.")
    s.add_argument("--model", default="demo", help="model folder or shipped name (default: demo)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=0, help="port (default 0: any free port, see the ready line)")
    s.add_argument("--allow-remote", action="store_true",
                   help="allow listening on a non-loopback address (clients need the token)")
    s.add_argument("--allow-host", action="append", metavar="NAME",
                   help="also answer requests addressed to this host name (repeatable; '*' for any). By "
                        "default only loopback names, and with --allow-remote any IP address, are answered")
    s.add_argument("--token-file", help="where the bearer token is kept (default: the user data folder); "
                                        "ATT3D_TOKEN overrides")
    s.add_argument("--rotate-token", action="store_true", help="write a new token even if one exists")
    s.add_argument("--max-queue", type=int, default=64, help="jobs waiting before requests get 503 (default 64)")
    s.add_argument("--threads", type=int, help="torch CPU threads")
    s.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    s.add_argument("--parent-pid", type=int, help="stop when this process exits (used by the add-on's client)")
    s.set_defaults(func=cmd_serve)
