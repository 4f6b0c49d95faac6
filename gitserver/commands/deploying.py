"""Runs a deploy for a command (var set, scale, restart, deploy, rollback)
under the app's deploy lock, exactly as a push does, streaming progress.

It never deploys by itself: the pipeline subprocess (hooks.pipeline) does,
holding the lock we pass it. A client that hangs up while we wait for the
lock cancels the wait; once the pipeline runs, it finishes its work.
"""
import time
from contextlib import contextmanager
from typing import Callable

from dotcloud.errors import DeployError, NotFound
from dotcloud.locks import AppLock

from .. import pipeline
from .context import CommandContext

POLL = 0.2


@contextmanager
def app_lock(ctx: CommandContext, app: str):
    """Hold the app's deploy lock; say so if we have to wait for it."""
    lock = AppLock(ctx.settings.paths, app)
    try:
        if not lock.try_acquire():
            ctx.progress(f"---> Another deploy of {app} is in progress; waiting for it to finish...")
            started = time.monotonic()
            while not lock.try_acquire():
                if ctx.disconnected():
                    raise DeployError("the client went away while waiting for the deploy lock")
                time.sleep(POLL)
            ctx.progress(f"---> Done waiting ({time.monotonic() - started:.1f}s); continuing")
            if ctx.store.app(app) is None:
                # Destroyed while we waited: nothing may be written for it any more.
                raise NotFound(f"no app named '{app}' that you can access")
        yield lock
    finally:
        lock.release()


def run_pipeline(ctx: CommandContext, app: str, action: list[str], lock: AppLock) -> None:
    """Run one pipeline action under a held lock; raise DeployError with its reason."""
    ok, reason = pipeline.run(ctx.settings, action, ctx.progress, lock_fd=lock.fd)
    if not ok:
        raise DeployError(reason)


def change_and_release(ctx: CommandContext, app: str, description: str,
                       apply: Callable[[], None], undo: Callable[[], None]) -> bool:
    """Change the app's settings and deploy them as a new release of the active
    build, all under the deploy lock; undo the change if the deploy fails.
    Returns False when nothing is deployed yet (the change waits for a push)."""
    with app_lock(ctx, app) as lock:
        apply()
        if ctx.store.active_release(app) is None:
            return False
        try:
            run_pipeline(ctx, app, ["release", app, "--user", ctx.user,
                                    "--description", description], lock)
        except DeployError:
            undo()
            raise
    return True


def redeploy(ctx: CommandContext, app: str, number: int) -> None:
    """Deploy release vN again, without building."""
    with app_lock(ctx, app) as lock:
        run_pipeline(ctx, app, ["deploy", app, str(number), "--user", ctx.user], lock)
