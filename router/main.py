"""The router daemon: starts the listeners, loads the table, runs until signalled.

This is the only module that touches process-level things (signals, the
event loop policy, DATA/run/router.json). It wires the parts together and
never handles a request itself.
"""
from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import signal
from pathlib import Path

import uvloop

from dotcloud import fsutil, logs
from dotcloud.datadir import DataDir

from . import control
from .admin import AdminConnection
from .proxy import ClientConnection, TLSClientConnection
from .router import Router
from .settings import Settings
from .table import TableError
from .tls import Certificates


def run(data_dir: Path, bind: str = "127.0.0.1", port: int = 8080,
        admin_port: int | None = None, log_json: bool = False,
        https_port: int | None = None, tls_cert: str = "", tls_key: str = "",
        domain: str = "localhost") -> None:
    """Serve until SIGTERM/SIGINT, then close the listeners and return.

    https_port None: no TLS listener; 0: one on a free port (router.json says which)."""
    logs.configure(json=log_json)
    settings = Settings.from_env()
    tls = None if https_port is None else (https_port, tls_cert, tls_key, domain)
    uvloop.run(_serve(Path(data_dir), bind, port, admin_port, settings, tls))


async def _serve(data_dir: Path, bind: str, port: int, admin_port: int | None,
                 settings: Settings, tls: tuple | None = None) -> None:
    loop = asyncio.get_running_loop()
    log = logs.get("router")
    # before anything announces the router: a signal from then on stops it cleanly
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    paths = DataDir(data_dir)
    paths.run.mkdir(parents=True, exist_ok=True)
    router = Router(settings, paths, loop, log)
    if tls is not None:
        _, tls_cert, tls_key, router.domain = tls
        # before the table: the swap computes the redirects from what is loaded
        router.certs = Certificates(data_dir, tls_cert, tls_key, log)
        router.certs.load()
    loop.set_exception_handler(
        lambda _loop, context: log.error("router_bug", message=context.get("message"),
                                         exc_info=context.get("exception")))
    try:
        router.load()
    except TableError as exc:
        log.warning("routes_unavailable", error=str(exc))

    server = await loop.create_server(lambda: ClientConnection(router), bind, port,
                                      backlog=1024, reuse_address=True)
    real_port = server.sockets[0].getsockname()[1]
    secure = None
    real_https = None
    if tls is not None:
        secure = await loop.create_server(
            lambda: TLSClientConnection(router), bind, tls[0], ssl=router.certs.listening,
            ssl_handshake_timeout=settings.header_timeout, backlog=1024, reuse_address=True)
        real_https = router.https_port = secure.sockets[0].getsockname()[1]
        router.update_redirects()
    admin = None
    real_admin = None
    if admin_port is not None:
        admin = await loop.create_server(
            lambda: AdminConnection(router, lambda: control.status(router)), bind, admin_port,
            reuse_address=True)
        real_admin = admin.sockets[0].getsockname()[1]
    sock_path = paths.socket("router")
    ctl = await control.start(router, sock_path)
    router.start_clock()
    log.info("router_listening", bind=bind, port=real_port, admin_port=real_admin,
             https_port=real_https, routes=len(router.table.routes),
             version=router.table.version)
    # written last: whoever waits for this file finds the router fully up
    info = {"pid": os.getpid(), "bind": bind, "port": real_port, "admin_port": real_admin}
    if real_https is not None:
        info["https_port"] = real_https
    fsutil.write_json(paths.daemon_info("router"), info)

    # Requests free their objects by reference counting; the cyclic collector
    # only needs to look at what is new, and rarely.
    gc.freeze()
    gc.set_threshold(20000, 50, 100)
    _keep_freed_memory()

    await stop.wait()

    log.info("router_stopping", in_flight=router.in_flight_total())
    for listener in (server, secure, admin, ctl):
        if listener is not None:
            listener.close()
    deadline = loop.time() + settings.shutdown_grace
    while router.in_flight_total() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for conn in list(router.connections):
        conn.close()
    router.stop_clock()
    try:
        sock_path.unlink()
    except FileNotFoundError:
        pass
    log.info("router_stopped")


def _keep_freed_memory() -> None:
    """Keep the heap glibc grew for read buffers instead of returning it.

    Every read of a large body is a bytes object of up to 256 KiB; by default
    glibc gives the top of the heap back to the kernel when it is freed, and
    the next read faults fresh zeroed pages in again (a brk per read or two,
    and most of what a 1 MiB response cost beyond copying)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
        libc.mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    except (OSError, AttributeError):
        pass     # not glibc: its defaults stand


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
