"""Which buildpack builds which service type: one read-only table.

Every type the parser accepts has an entry (tests hold the two lists
equal). This module never builds anything itself.
"""
from __future__ import annotations

from types import MappingProxyType

from .base import Buildpack
from .custom import CustomBuildpack
from .datastores import PostgresqlBuildpack, RedisBuildpack
from .dockerfile import DockerfileBuildpack
from .nodejs import NodejsBuildpack
from .python import PythonBuildpack
from .spec import BuildfileError
from .static import StaticBuildpack

BUILDPACKS = MappingProxyType({
    "python": PythonBuildpack(worker=False),
    "python-worker": PythonBuildpack(worker=True),
    "nodejs": NodejsBuildpack(),
    "static": StaticBuildpack(),
    "custom": CustomBuildpack(),
    "dockerfile": DockerfileBuildpack(),
    "postgresql": PostgresqlBuildpack(),
    "redis": RedisBuildpack(),
})


def buildpack_for(service_type: str) -> Buildpack:
    try:
        return BUILDPACKS[service_type]
    except KeyError:
        raise BuildfileError(f"unknown service type '{service_type}'") from None
