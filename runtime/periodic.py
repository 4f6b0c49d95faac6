"""A sweeper's thread: `sweep_once(settings, store)` now (or first after one
period) and then every `every` seconds, with its own store connection so a
slow engine or filesystem never delays a reconcile pass. A pass that fails
(the engine down, the store busy) costs a log line; the next one tries again.
"""
import threading
from typing import Callable

from dotcloud import logs
from dotcloud.settings import Settings
from dotcloud.state import Store

log = logs.get("runtime")


def start(settings: Settings, stopping: threading.Event, name: str,
          sweep_once: Callable[[Settings, Store], object], every: float,
          at_start: bool = False) -> threading.Thread:
    def loop() -> None:
        store = Store(settings.paths.db)
        if not at_start and stopping.wait(every):
            return
        while True:
            try:
                sweep_once(settings, store)
            except Exception as exc:
                log.warning(f"{name.replace('-', '_')}_failed", error=str(exc))
            if stopping.wait(every):
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
