"""`run APP SERVICE -- COMMAND ...`: a one-off command in a service's
environment (env and directory of the active generation's first instance),
with the client's stdin, stdout and stderr, returning its exit status.

The argv is executed as given, never through a shell (unless the user's
argv is itself `sh -c ...`). It runs in its own session under memory, CPU
and time limits (runtime.limits.preexec), and nothing of it outlives the
command: when it exits, when it times out, or when the client hangs up, its
whole process group is killed, and so is its cgroup (runtime.cgroups, under
the service's limits), which holds what called setsid() too. A command the
kernel killed for the memory limit says so: `out of memory (limit 512M)`.
Under the docker runtime it runs in a container of the release's image
instead (runtime.docker_run: confined as the instance, as the app's uid),
under the swarm runtime as a one-off swarm task of that image on a node
(runtime.swarm_run: the same, never restarted, no stdin), removed whole on
exit, timeout or hang-up.

A data service's command (postgresql, redis) gets the server's connection
variables and what its clients read (hooks.datastores.client_env: libpq's
PG*, so `run APP db -- psql -c 'select 1'` connects). It runs on this host
with the host's clients, except under the swarm runtime, where the server
is on its node: there it is a one-off task of the data image (which has
psql and redis-cli) pinned to that node.
"""
import dataclasses
import os
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from dotcloud import appusers, names
from dotcloud.dyno import with_dyno
from dotcloud.errors import DotcloudError, NotFound
from hooks import datastores
from runtime import apptmp, cgroups, docker_run, swarm_run
from runtime.limits import preexec

from . import queries
from .context import SEND_ERRORS, Args, Command, CommandContext
from .parse import int_option

POLL = 0.2
READ_SIZE = 64 * 1024
NOFILE = 4096
# Output may still come from a pipe after the command exited and its group was killed.
DRAIN_AFTER_EXIT = 1.0


class CommandNotFound(DotcloudError):
    exit_status = 127


class OutOfMemory(DotcloudError):
    exit_status = 137   # 128 + SIGKILL, as a shell reports it


class TimedOut(DotcloudError):
    exit_status = 124   # as timeout(1)


def run(ctx: CommandContext, args: Args) -> int:
    app = ctx.app(args.positional[0])
    service = names.service(args.positional[1])
    argv = list(args.rest or ())
    if not argv:
        raise DotcloudError("nothing to run; usage: run APP SERVICE -- COMMAND ...")
    limit = int(ctx.settings.build_timeout)
    timeout = int_option(args, "timeout", limit, 1, limit)
    inst = _first_instance(ctx, app, service)
    if inst.spec is None:
        raise DotcloudError(f"{inst.label} cannot be run in: {inst.spec_error}")
    spec = inst.spec
    if spec.data_service is None:
        spec = dataclasses.replace(spec, env=with_dyno(spec.env, "run.1"))
    else:
        # The server's own clients connect with no argument (`psql -c ...`).
        spec = dataclasses.replace(spec, env={**spec.env, **datastores.client_env(
            spec.service, spec.data_service.type, spec.env)})
    first = min(spec.processes, key=lambda p: p.name)
    cwd, env = first.cwd, dict(spec.env)
    ctx.audit_detail = f"{service}: {' '.join(argv)[:300]}"
    if ctx.settings.runtime == "swarm" and spec.data_service is not None:
        # Its server is on its node, not here: the command runs there, in a
        # one-off task of the data image, which has the server's clients.
        first = dataclasses.replace(first, cwd=spec.env.get("HOME") or "/tmp")
        spec = dataclasses.replace(spec, image=ctx.settings.docker_data_image, processes=[first])
    if ctx.settings.runtime == "swarm" or (ctx.settings.runtime == "docker"
                                           and spec.data_service is None):
        code = _run_in_container(ctx, spec, argv, timeout)
        ctx.audit_detail += f" (exit {code})"
        return code
    group = cgroups.transient(ctx.settings.data, "run",
                              inst.spec.limits.over(ctx.settings.default_limits))
    try:
        proc = _start(argv, cwd, env, group, preexec(
            ctx.settings.build_memory_bytes, timeout, NOFILE, _user(ctx, app.name),
            enter=group.preexec() if group else None))
    except FileNotFoundError:
        raise CommandNotFound(f"{argv[0][:80]}: command not found in {service}'s "
                              "environment") from None
    except PermissionError:
        raise CommandNotFound(f"{argv[0][:80]}: permission denied") from None
    except OSError as exc:
        raise DotcloudError(f"cannot run {argv[0][:80]}: {exc.strerror}") from None
    except ValueError:   # a NUL byte in an argument
        raise DotcloudError("a command's arguments cannot contain NUL bytes") from None
    try:
        code = _pump(ctx, proc, time.monotonic() + timeout)
    finally:
        _kill_group(proc.pid)
        oom = group.oom_kills() if group is not None else 0
        if group is not None:
            group.kill_all()
        proc.wait()
        if group is not None:
            group.remove()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
    if code is None:
        raise TimedOut(f"{argv[0][:80]} did not finish in {timeout}s; killed")
    if oom and code != 0:
        raise OutOfMemory(f"{argv[0][:80]}: {group.out_of_memory()}")
    ctx.audit_detail += f" (exit {code})"
    return code


def _run_in_container(ctx: CommandContext, spec, argv: list[str], timeout: int) -> int:
    """The command in a container of the release's image (runtime.docker_run),
    or a one-off swarm task of it (runtime.swarm_run), its stdin and output
    relayed as on the host; the container (the service) is removed whole when
    the command ends, times out or the client hangs up."""
    runner = swarm_run if ctx.settings.runtime == "swarm" else docker_run
    fd, reasons = tempfile.mkstemp(prefix="dotcloud-run-", suffix=".exit")
    os.close(fd)
    try:
        launch = runner.launcher(ctx.settings, spec, argv, reason_file=Path(reasons))
        # The launcher speaks to the engine: it stays the platform's user, in
        # its own session; the container is the app's.
        proc = subprocess.Popen(launch.argv, cwd="/", env=launch.env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                close_fds=True, start_new_session=True)
        try:
            code = _pump(ctx, proc, time.monotonic() + timeout)
        finally:
            _kill_group(proc.pid)
            runner.remove(launch.container)
            proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                pipe.close()
        reason = Path(reasons).read_text().strip()
    finally:
        os.unlink(reasons)
    if code is None:
        raise TimedOut(f"{argv[0][:80]} did not finish in {timeout}s; killed")
    if reason and code != 0:
        raise OutOfMemory(f"{argv[0][:80]}: {reason}")
    return code


def _start(argv, cwd, env, group, setup) -> subprocess.Popen:
    """Start the command; its cgroup goes if it cannot start."""
    try:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                close_fds=True, preexec_fn=setup)
    except BaseException:
        if group is not None:
            group.remove()
        raise


def _user(ctx: CommandContext, app: str) -> tuple[int, int] | None:
    """The app's own uid and gid: the command runs as the app does."""
    user = appusers.for_app(ctx.settings, app)
    return None if user is None else apptmp.user(ctx.settings.paths, app, user.uid, user.gid)


def _first_instance(ctx: CommandContext, app, service: str):
    mine = [li.instance for li in queries.live_instances(ctx.store, app)
            if li.role == "active" and li.instance.service == service]
    if not mine:
        known = queries.services(ctx.settings, ctx.store, app.name)
        if service not in known:
            raise NotFound(f"{app.name} has no service '{service}'"
                           + (f" (services: {', '.join(known)})" if known else
                              " (nothing is deployed yet)"))
        raise NotFound(f"service '{service}' of {app.name} has no instance to run in")
    return min(mine, key=lambda i: i.number)


def _pump(ctx: CommandContext, proc: subprocess.Popen, deadline: float) -> int | None:
    """Relay stdin, stdout and stderr until the command ends; return its exit
    status for the SSH client, or None when it ran past the deadline."""
    threading.Thread(target=_feed_stdin, args=(ctx, proc.stdin), daemon=True).start()
    outputs = {proc.stdout.fileno(): ctx.channel.sendall,
               proc.stderr.fileno(): ctx.channel.sendall_stderr}
    exited_at = None
    with selectors.DefaultSelector() as selector:
        for fd in outputs:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if ctx.disconnected():
                return 255
            if now > deadline:
                return None
            if exited_at is None and proc.poll() is not None:
                exited_at = now
                _kill_group(proc.pid)   # nothing may outlive the command
            if exited_at is not None and (not selector.get_map()
                                          or now - exited_at > DRAIN_AFTER_EXIT):
                break
            if not selector.get_map():
                time.sleep(POLL)   # it closed its output but runs on
                continue
            for key, _ in selector.select(POLL):
                data = os.read(key.fd, READ_SIZE)
                if not data:
                    selector.unregister(key.fd)
                    continue
                try:
                    outputs[key.fd](data)
                except SEND_ERRORS:
                    return 255
    code = proc.wait()
    return code if code >= 0 else 128 - code


def _feed_stdin(ctx: CommandContext, stdin) -> None:
    """Copy what the client sends to the command until either side closes."""
    try:
        while True:
            data = ctx.channel.recv(READ_SIZE)
            if not data:
                break
            stdin.write(data)
            stdin.flush()
    except (*SEND_ERRORS, ValueError):
        pass
    finally:
        try:
            stdin.close()
        except (OSError, ValueError):
            pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


COMMANDS = (
    Command("run", run, "APP SERVICE [--timeout SECONDS] -- COMMAND ...",
            "run a one-off command in a service's environment", 2, 2, options=("timeout",),
            takes_rest=True),
)
