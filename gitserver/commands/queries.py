"""Read-only views of an app assembled from the store and the release files:
its services, URLs and live instances; and the nudge that asks the runtime
to act on changed desired state now.

Shared by the commands that show an app (info, url, status, scale, run).
It never writes to the store or the filesystem.
"""
import json
from dataclasses import dataclass
from pathlib import Path

from dotcloud.control import ControlUnavailable, request
from dotcloud.desired import Manifest
from dotcloud.fsutil import read_json
from dotcloud.models import App, Instance, Release
from dotcloud.settings import Settings
from dotcloud.state import Store

LIVE_GENERATIONS = ("starting", "active", "draining")


@dataclass(frozen=True)
class LiveInstance:
    instance: Instance
    role: str            # active, starting (a deploy in progress), draining


def release_dir(settings: Settings, app: str, build: int) -> Path:
    return settings.paths.release(app, build)


def poke_runtime(settings: Settings) -> None:
    """Ask the runtime daemon for a reconcile pass now (it also runs one every second)."""
    try:
        request(settings.paths.socket("runtime"), {"op": "reconcile"}, timeout=30)
    except ControlUnavailable:
        pass


def manifest(settings: Settings, store: Store, app: str) -> Manifest | None:
    """The active release's build manifest, or None when nothing is deployed."""
    release = store.active_release(app)
    if release is None:
        return None
    return Manifest.load(release_dir(settings, app, release.build) / Manifest.FILE)


def services(settings: Settings, store: Store, app: str) -> dict[str, dict]:
    """service -> {"type", "http"} of the active release."""
    found = manifest(settings, store, app)
    return {name: {"type": info.type, "http": info.http}
            for name, info in sorted(found.services.items())} if found else {}


def http_services(release: Release | None) -> list[str]:
    if release is None:
        return []
    return sorted(json.loads(release.config).get("http_services", ["www"]))


def service_url(settings: Settings, app: str, service: str) -> str:
    if service == "www":
        return settings.url(app)
    port = "" if settings.http_port == 80 else f":{settings.http_port}"
    return f"http://{service}.{app}.{settings.domain}{port}/"


def domain_url(settings: Settings, domain: str) -> str:
    port = "" if settings.http_port == 80 else f":{settings.http_port}"
    return f"http://{domain}{port}/"


def urls(settings: Settings, store: Store, app: str) -> dict[str, str]:
    """service -> URL for every HTTP service of the active release (www when none yet)."""
    served = http_services(store.active_release(app)) or ["www"]
    return {service: service_url(settings, app, service) for service in served}


def live_instances(store: Store, app: App) -> list[LiveInstance]:
    """Instances of the active generation and of any deploy starting or draining."""
    out = []
    for gen in store.generations(app.name, LIVE_GENERATIONS):
        role = "active" if gen.id == app.generation else gen.state
        out.extend(LiveInstance(inst, role) for inst in store.instances(app.name, generation=gen.id))
    out.sort(key=lambda li: (li.role != "active", li.instance.service, li.instance.number,
                             li.instance.id))
    return out


def instance_status(settings: Settings, inst: Instance) -> dict:
    """What the instance's shim last reported (empty when it has not yet)."""
    path = settings.paths.instance(inst.id).status
    try:
        return read_json(path) or {}
    except ValueError:
        return {}


def log_path(settings: Settings, app: str, label: str) -> Path:
    return settings.paths.log(app, label)
