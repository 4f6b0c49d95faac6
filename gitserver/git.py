"""Serves git-receive-pack and git-upload-pack with dulwich's handlers.

A Backend maps a validated app name to its bare repository and applies
permissions; ReceivePack runs the build-and-deploy pipeline from dulwich's
per-ref update seam, so a failed build leaves the branch where it was and its
reason lands on the ref line. It never builds a path from an unvalidated name.
"""
import struct
import time
from pathlib import Path

import paramiko
from dulwich.errors import GitProtocolError, HangupException
from dulwich.protocol import SIDE_BAND_CHANNEL_PROGRESS, Protocol
from dulwich.repo import Repo
from dulwich.server import Backend, ReceivePackHandler, UploadPackHandler

from dotcloud import appusers, logs, names, outcome
from dotcloud.appfiles import remove_app_files
from dotcloud.errors import NotFound, UsageError
from dotcloud.locks import AppLock
from dotcloud.settings import Settings
from dotcloud.state import Store

from hooks import pipeline as hooks_pipeline

from . import packs, pipeline
from .channel import ChannelIO, PushTooLarge

DEPLOY_REFS = (b"refs/heads/main", b"refs/heads/master")
ZERO = b"0" * 40
log = logs.get("gitserver")


def repo_path(settings: Settings, app: str) -> Path:
    return settings.paths.repo(names.app(app))


class AppBackend(Backend):
    """Opens the repository of an app the user may access; creates it on first push."""

    def __init__(self, settings: Settings, store: Store, user: str, create: bool):
        self.settings, self.store, self.user, self.create = settings, store, user, create

    def open_repository(self, path: str) -> Repo:
        app = names.app_from_path(path)
        created = False
        if self.store.app(app) is None and self.create:
            created = self.store.create_app(app, self.user)
        if created:
            # Files an earlier app of this name left (a destroy cut short) are not ours.
            remove_app_files(self.settings.data, app)
            appusers.of(self.store, self.settings, app)
            self.store.audit(self.user, "create", app, "first push")
            log.info("app_created", app=app, user=self.user)
        elif self.store.app(app) is None or not self.store.can_access(self.user, app):
            raise NotFound(f"no app named '{app}' that you can access")
        path = repo_path(self.settings, app)
        if not (path / "HEAD").exists():
            path.mkdir(parents=True, exist_ok=True)
            repo = Repo.init_bare(str(path))
            repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
            return repo
        return Repo(str(path))


class LostUpdate(OSError):
    pass


class StrictRefs:
    """The repository's refs, where a compare-and-swap that loses raises.

    dulwich answers `ok` when its set_if_equals or remove_if_equals returns
    False; raising makes it answer `ng ... failed to write` instead. A ref
    already at the wanted value (a deploy branch the pipeline moved) is a
    success.
    """

    def __init__(self, refs):
        self._refs = refs

    def __getattr__(self, name):
        return getattr(self._refs, name)

    def __contains__(self, name):
        return name in self._refs

    def __getitem__(self, name):
        return self._refs[name]

    def __setitem__(self, name, value):
        self._refs[name] = value

    def __delitem__(self, name):
        del self._refs[name]

    def __iter__(self):
        return iter(self._refs)

    def set_if_equals(self, name, old_ref, new_ref, *args, **kwargs):
        if self._refs.set_if_equals(name, old_ref, new_ref, *args, **kwargs):
            return True
        if self._refs.read_ref(name) == new_ref:
            return True
        raise LostUpdate(name)

    def remove_if_equals(self, name, old_ref, *args, **kwargs):
        if self._refs.remove_if_equals(name, old_ref, *args, **kwargs):
            return True
        if self._refs.read_ref(name) is None:
            return True
        raise LostUpdate(name)


class ReceivePack(ReceivePackHandler):
    def __init__(self, backend: AppBackend, args, proto, app: str):
        super().__init__(backend, args, proto)
        self.backend = backend
        self.app = app
        self.lock: AppLock | None = None
        self.client_gone = False
        self.stored: list[str] = []
        self.repo.refs = StrictRefs(self.repo.refs)

    def _apply_pack(self, refs):
        statuses = super()._apply_pack(refs)
        try:
            try:
                unpack = next(statuses)
            except (struct.error, ValueError, EOFError, TypeError) as exc:
                # dulwich lets some malformed packs escape as these; they are the
                # client's fault and get the same answer as any unpack failure.
                log.info("pack_refused", app=self.app, error=str(exc))
                yield (b"unpack", b"corrupt or truncated pack")
                return
            yield unpack
            yield from statuses
        finally:
            if self.lock is not None:
                self.lock.release()
            if self.stored:
                store = self.backend.store
                with store.tx():      # one commit for a push of many refs, not one each
                    for detail in self.stored:
                        store.audit(self.backend.user, "push", self.app, detail)

    def _on_update(self, ref, old_sha, new_sha):
        if ref not in DEPLOY_REFS or new_sha == ZERO:
            return self._store_ref(ref, old_sha, new_sha)
        settings = self.backend.settings
        if self.lock is None:
            self.lock = AppLock(settings.paths, self.app)
            if not self.lock.try_acquire():
                self.progress(f"---> Another push to {self.app} is in progress; waiting for it to finish...")
                started = time.monotonic()
                self.lock.acquire()
                self.progress(f"---> Done waiting ({time.monotonic() - started:.1f}s); continuing")
        current = self.repo.refs.as_dict().get(ref, ZERO)
        if current != old_sha:
            # The push we waited for moved this branch: deploying ours now would
            # leave the branch and what serves out of step.
            return b"the branch moved while this push waited (fetch first, then push again)"
        action = ["push", self.app, new_sha.decode(), "--ref", ref.decode(),
                  "--user", self.backend.user]
        ok, reason = pipeline.run(settings, action, self.progress, lock_fd=self.lock.fd)
        # The store decides, not the pipeline's exit: one killed after its router
        # switch still deployed this push, and its branch must follow.
        store = self.backend.store
        if not ok:
            hooks_pipeline.settle(settings, store, self.app)
        ok = outcome.pushed(store, self.app, ref.decode(), new_sha.decode())
        reason = "" if ok else reason or "the deploy did not finish"
        self.backend.store.audit(self.backend.user, "push", self.app,
                                 f"{ref.decode()} {new_sha.decode()[:7]} "
                                 f"{'deployed' if ok else 'failed: ' + reason}")
        if ok:
            head = self.repo.refs.get_symrefs().get(b"HEAD")
            if head not in self.repo.refs.as_dict() and head != ref:
                self.repo.refs.set_symbolic_ref(b"HEAD", ref)
            return None
        return reason.replace("\n", " ").encode("utf-8", "replace")[:900]

    def _store_ref(self, ref, old_sha, new_sha):
        """Check an update of a ref that deploys nothing; dulwich then applies it.

        A stale old sha is answered `ng` here; a race lost after this check
        fails in StrictRefs, so no lost update is ever answered `ok`.
        """
        current = self.repo.refs.read_ref(ref)
        if new_sha == ZERO and current is None:
            return b"no such ref"
        if (current or ZERO) != old_sha:
            return b"fetch first"
        self.stored.append(f"{ref.decode()} {new_sha.decode()[:7]} (stored)")
        return None

    def progress(self, line: str) -> None:
        if self.client_gone:
            return
        try:
            self.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS,
                                      (line + "\n").encode("utf-8", "replace"))
        except (OSError, EOFError, paramiko.SSHException):
            # The client went away; the pipeline still finishes its work, and
            # the outcome is the same as if it had stayed.
            self.client_gone = True
            log.info("git_client_gone", app=self.app)


def serve(settings: Settings, store: Store, user: str, command: str, path: str,
          io: ChannelIO) -> int:
    """Serve one git command; raises DotcloudError for refusals."""
    app = names.app_from_path(path)
    receiving = command == "git-receive-pack"
    backend = AppBackend(settings, store, user, create=receiving)
    proto = Protocol(io.read, io.write)
    if receiving:
        io.max_bytes = settings.max_push_bytes
        handler = ReceivePack(backend, [app], proto, app)
    else:
        handler = UploadPackHandler(backend, [app], proto)
        store.audit(user, "fetch", app)
    try:
        handler.handle()
    except HangupException:
        # The client closed its input mid-conversation; it may still read the answer.
        log.info("git_client_hung_up", app=app, command=command)
        raise UsageError("git protocol error: the client closed its input before the "
                         "request ended") from None
    except (GitProtocolError, ValueError, struct.error) as exc:
        log.info("git_protocol_error", app=app, command=command, error=str(exc)[:200])
        raise UsageError(f"git protocol error: {_first_line(exc)}") from None
    except PushTooLarge as exc:
        raise UsageError(str(exc)) from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        # The client hung up before the last answer; what it pushed is settled.
        log.info("git_client_gone", app=app, command=command, error=str(exc)[:200])
        return 1
    finally:
        if receiving:
            packs.remove_stale(repo_path(settings, app))
    return 0


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return text[:160]
