"""The build file's public face: its data types, `parse` and `load_tree`.

The pipeline imports from here. The values live in `buildpacks.spec`, the
validation in `buildpacks.schema`, tree detection in `buildpacks.detect`;
this module only gathers them, so it must never grow logic of its own.
"""
from .detect import load_tree
from .schema import parse
from .spec import Buildfile, BuildfileError, Healthcheck, ServiceSpec

__all__ = ["Buildfile", "BuildfileError", "Healthcheck", "ServiceSpec", "load_tree", "parse"]
