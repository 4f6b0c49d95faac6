"""The post-receive pipeline, run as its own process by the SSH daemon:
`python -m hooks.pipeline --data DIR --result FILE ACTION ...`.

Actions: `push APP REV` (build and deploy), `deploy APP N` (redeploy release
vN without building: rollback, deploy), `release APP` (a new release of the
active build with the current variables and scale: var set, scale, restart).
Progress goes to stdout line by line; the verdict goes to the result file.
The caller holds the app's deploy lock and passes it as DOTCLOUD_LOCK_FD.
"""
import argparse
import json
import os
import shutil
import sys
import time

from dotcloud import appusers, logs, names, outcome
from dotcloud.errors import DotcloudError, NotFound
from dotcloud.fsutil import write_json
from dotcloud.locks import AppLock
from dotcloud.settings import load
from dotcloud.state import Store

from . import build, deploy, retention
from .export import upload_name
from .progress import Progress

log = logs.get("pipeline")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hooks.pipeline")
    parser.add_argument("--data", required=True)
    parser.add_argument("--settings", default="{}")
    parser.add_argument("--result", required=True)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("push")
    p.add_argument("app"); p.add_argument("rev")
    p.add_argument("--ref", default="refs/heads/main"); p.add_argument("--user", required=True)
    d = sub.add_parser("deploy")
    d.add_argument("app"); d.add_argument("number", type=int); d.add_argument("--user", required=True)
    r = sub.add_parser("release")
    r.add_argument("app"); r.add_argument("--user", required=True)
    r.add_argument("--description", default="config change")
    args = parser.parse_args(argv)
    logs.configure(stream=sys.stderr)
    settings = load(args.data, **json.loads(args.settings))
    progress = Progress()
    store = Store(settings.paths.db)
    lock = _hold_lock(settings, names.app(args.app))
    try:
        # What an earlier pipeline of this app, killed half way, left unsettled.
        settle(settings, store, names.app(args.app))
        if args.action == "push":
            push(settings, store, args.app, args.rev, args.user, progress, ref=args.ref)
        elif args.action == "deploy":
            redeploy(settings, store, args.app, args.number, args.user, progress)
        else:
            new_config_release(settings, store, args.app, args.user, args.description, progress)
    except DotcloudError as exc:
        write_json(args.result, {"ok": False, "reason": str(exc)})
        log.info("pipeline_failed", app=args.app, action=args.action, reason=str(exc))
        return 1
    except Exception as exc:
        log.exception("pipeline_crashed", app=args.app, action=args.action)
        write_json(args.result, {"ok": False, "reason": f"internal error: {exc.__class__.__name__}"})
        return 1
    finally:
        if lock is not None:
            lock.release()
    write_json(args.result, {"ok": True, "timings": progress.phases})
    return 0


def push(settings, store, app, rev, user, progress, ref="refs/heads/main") -> None:
    repo = settings.paths.repo(app)
    variables = store.variables(app)
    name = upload_name(repo, rev)   # hg-…, rsync-…
    release = store.new_release(app, rev, user, f"push of {name}" if name else "push",
                                outcome.push_config(variables, ref))
    try:
        try:
            manifest = build.build(settings, app, release, repo, variables, progress)
        except DotcloudError as exc:
            store.set_release_status(release.id, "failed", f"build failed: {exc}")
            raise type(exc)(f"build failed: {exc}") from None
        release = _with_http(store, release, manifest)
        _deploy(settings, store, app, release, progress)
    except DotcloudError:
        # A refused push keeps its record (revisions shows why), not its build.
        shutil.rmtree(build.release_dir(settings, app, release.build), ignore_errors=True)
        if (owner := appusers.lookup(store, app)) is not None:
            shutil.rmtree(build.scratch_dir(settings, owner.uid), ignore_errors=True)
        raise


def redeploy(settings, store, app, number, user, progress) -> None:
    source = store.release(app, number)
    if source is None:
        raise NotFound(f"app '{app}' has no release v{number}")
    config = outcome.inherited(json.loads(source.config))
    release = store.new_release(app, source.revision, user, f"deploy of v{number}", config,
                                build=source.build, status="built")
    progress.step(f"Deploying release v{number} (revision {source.revision[:7]}) without rebuilding")
    _deploy(settings, store, app, release, progress)


def new_config_release(settings, store, app, user, description, progress) -> None:
    current = store.active_release(app)
    if current is None:
        raise NotFound(f"app '{app}' has nothing deployed yet; push code first")
    config = dict(outcome.inherited(json.loads(current.config)), variables=store.variables(app))
    release = store.new_release(app, current.revision, user, description, config,
                                build=current.build, status="built")
    _deploy(settings, store, app, release, progress)


def _deploy(settings, store, app, release, progress) -> None:
    t0 = time.monotonic()
    try:
        deploy.deploy(settings, store, app, release, progress)
    except DotcloudError as exc:
        store.set_release_status(release.id, "failed", f"deploy failed: {exc}")
        raise type(exc)(f"deploy failed: {exc}") from None
    # The release is active: its branch moves now, whatever the client does.
    outcome.finish_push(settings.paths.repo(app), store, app)
    progress.step("Application fully deployed")
    progress.step(settings.url(app))
    progress.line(f"     ({progress.timings()})")
    log.info("deployed", app=app, release=release.number, seconds=round(time.monotonic() - t0, 3))
    retention.prune(settings, store, app)


def settle(settings, store, app) -> list[str]:
    """outcome.settle with this data directory's layout."""
    return outcome.settle(
        settings.paths.repo(app), store, app, settings.paths,
        lambda n: shutil.rmtree(build.release_dir(settings, app, n), ignore_errors=True))


def _with_http(store, release, manifest):
    http = sorted(n for n, s in manifest.services.items() if s.http)
    config = dict(json.loads(release.config), http_services=http)
    store.set_release_config(release.id, config, "built")
    return store.release_by_id(release.id)


def _hold_lock(settings, app):
    """Use the caller's lock if it passed one, else take it ourselves."""
    fd = os.environ.get("DOTCLOUD_LOCK_FD")
    if fd:
        return None  # inherited descriptor: the flock is shared with the caller
    lock = AppLock(settings.paths, app)
    if not lock.try_acquire():
        print(f"---> Another deploy of {app} is in progress; waiting for it to finish...", flush=True)
        lock.acquire()
    return lock


if __name__ == "__main__":
    sys.exit(main())
