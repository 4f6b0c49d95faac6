"""Runs the post-receive pipeline (hooks.pipeline) as a subprocess and relays
its output line by line to a progress callback.

The pipeline is a separate process so that a build can be resource-limited,
killed, and can never take the SSH daemon down with it. Its verdict comes
back in a small JSON result file, not mixed into the output.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from dotcloud.settings import Settings


def run(settings: Settings, action: list[str], progress: Callable[[str], None],
        lock_fd: int | None = None) -> tuple[bool, str]:
    """Run `python -m hooks.pipeline ACTION...`; return (ok, reason)."""
    fd, result_path = tempfile.mkstemp(dir=settings.paths.run, prefix="result-", suffix=".json")
    os.close(fd)
    argv = [sys.executable, "-m", "hooks.pipeline", "--data", str(settings.data),
            "--settings", settings_json(settings), "--result", result_path, *action]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if lock_fd is not None:
        env["DOTCLOUD_LOCK_FD"] = str(lock_fd)
    # The pipeline's own logs (and any traceback) go to the platform log, not to the user.
    errlog = open(settings.paths.pipeline_log, "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=errlog, env=env, cwd=str(settings.data),
                                pass_fds=(lock_fd,) if lock_fd is not None else ())
        with proc.stdout:
            for raw in proc.stdout:
                progress(raw.decode("utf-8", "replace").rstrip("\n"))
        code = proc.wait()
        result = json.loads(Path(result_path).read_text() or "{}")
    except (OSError, ValueError) as exc:
        return False, f"internal error running the pipeline: {exc}"
    finally:
        errlog.close()
        Path(result_path).unlink(missing_ok=True)
    if code == 0 and result.get("ok"):
        return True, ""
    return False, result.get("reason") or f"pipeline failed (exit {code})"


def settings_json(settings: Settings) -> str:
    return json.dumps({"bind": settings.bind, "http_port": settings.http_port,
                       "ssh_port": settings.ssh_port, "domain": settings.domain,
                       "runtime": settings.runtime})
