"""The route table the router serves, derived from the state store.

The deployer calls publish() after every switch: it computes the table from
the store, writes DATA/run/routes.json crash-safely under a lock (so two
deploys never write an older table last), and asks the router to reload.
The router reads only that file; it never opens the database.
"""
import fcntl
import json
import os
from pathlib import Path

from . import placement
from .control import ControlUnavailable, request
from .fsutil import write_json
from .settings import Settings
from .state import Store


def compute(store: Store, domain: str, data: Path | None = None) -> dict:
    """`data`: the data directory, where instances on other nodes say their
    address (dotcloud.placement); one placed nowhere for now gets no traffic."""
    routes: dict[str, dict] = {}
    for app in store.apps():
        if app.generation is None:
            continue
        release = store.active_release(app.name)
        http = set(json.loads(release.config).get("http_services", ["www"])) if release else {"www"}
        backends: dict[str, list] = {}
        for inst in store.instances(app.name, generation=app.generation):
            if inst.desired == "run" and inst.service in http:
                addr = placement.LOCAL if data is None else placement.address(data, inst.spec)
                if addr is None:
                    continue
                backends.setdefault(inst.service, []).append(
                    {"id": f"{app.name}.{inst.label}#{inst.id}", "host": addr,
                     "port": inst.port})
        for service in sorted(http):
            entry = {"app": app.name, "service": service, "backends": backends.get(service, [])}
            host = f"{app.name}.{domain}" if service == "www" else f"{service}.{app.name}.{domain}"
            routes[host] = entry
            if service == "www":
                routes[f"www.{app.name}.{domain}"] = entry
        options = store.domain_options(app.name)
        for name, _, service in store.domains(app.name):
            routes[name] = {"app": app.name, "service": service,
                            "backends": backends.get(service, [])}
            # HTTPS (router/tls.py): only when set, so routes.json is as before otherwise
            routes[name].update({k: True for k, v in options.get(name, {}).items() if v})
    return routes


def publish(settings: Settings, store: Store, reload: bool = True) -> int:
    """Write routes.json from the store and make the router load it; return its version."""
    lock_path = settings.paths.routes_lock
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        version = store.next_counter("routes_version")
        write_json(settings.paths.routes,
                   {"version": version,
                    "routes": compute(store, settings.domain, settings.data)})
        if reload:
            try:
                request(settings.paths.socket("router"), {"op": "reload"})
            except ControlUnavailable:
                pass  # a router that is down loads the file when it starts
    finally:
        os.close(fd)
    return version


def drain(settings: Settings, backends: list[tuple[str, int]], timeout: float) -> dict:
    try:
        return request(settings.paths.socket("router"),
                       {"op": "drain", "backends": [list(b) for b in backends], "timeout": timeout},
                       timeout=timeout + 5)
    except ControlUnavailable as exc:
        return {"ok": False, "error": str(exc)}
