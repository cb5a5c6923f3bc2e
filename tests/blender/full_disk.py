"""Run a command on a really full disk: a small tmpfs mounted in a user + mount namespace (no root
needed where the kernel allows unprivileged user namespaces), holding the earlier files, filled up
to ``--leave`` bytes. Prints one JSON line: the command's exit status, its stderr, and every file
left in the tmpfs with its SHA-256.

    unshare --user --map-root-user --mount python full_disk.py --mount DIR --earlier SRC \
        --leave 4096 -- COMMAND...
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "filler"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mount", required=True)
    ap.add_argument("--size", default="16m")
    ap.add_argument("--earlier", required=True, help="a folder copied into the tmpfs first")
    ap.add_argument("--leave", type=int, required=True, help="bytes left free for the command")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    mnt = Path(a.mount)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={a.size}", "tmpfs", str(mnt)], check=True)
    shutil.copytree(a.earlier, mnt, dirs_exist_ok=True)
    with open(mnt / "filler", "wb") as f:  # fill the disk up
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    # leave just a little: tmpfs counts whole pages
    size = (mnt / "filler").stat().st_size
    os.truncate(mnt / "filler", max(0, size - a.leave))
    before = files(mnt)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    print(json.dumps({"rc": r.returncode, "stderr": r.stderr, "before": before, "after": files(mnt),
                      "free": shutil.disk_usage(mnt).free}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
