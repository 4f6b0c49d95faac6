"""Where an app's files live in the data directory, and removing them.

Used by `destroy`, by `create` and by an app's first push, so that files an
earlier app of the same name left behind (a destroy cut short) never become
the new owner's. `app` must be a validated name.
"""
import shutil
from pathlib import Path

from .datadir import DataDir


def app_paths(data: Path, app: str) -> list[Path]:
    return DataDir(data).app_paths(app)


def remove_app_files(data: Path, app: str) -> None:
    for path in app_paths(data, app):
        shutil.rmtree(path, ignore_errors=True)
