"""The dockerfile type's buildpack: the checks it makes before the runtime
builds the image (a Dockerfile in the approot; a runtime that runs images),
and the build file's rules for it."""
import dataclasses

import pytest

from buildpacks import build_service
from buildpacks.schema import parse
from dotcloud.errors import BuildError


class Elsewhere:
    """An executor whose steps do not run on this host (the docker runtime's)."""
    python = "python3"
    identity = "elsewhere"
    on_host = False


def test_the_process_runtime_refuses_a_dockerfile_service_in_one_line(make_ctx):
    ctx, _ = make_ctx({"Dockerfile": "FROM scratch\n"}, type="dockerfile")
    with pytest.raises(BuildError) as e:
        build_service(ctx)
    assert str(e.value) == "service 'www': type dockerfile needs the docker or swarm runtime"


def test_a_dockerfile_service_needs_a_dockerfile_in_its_approot(make_ctx):
    ctx, _ = make_ctx({"app.py": ""}, type="dockerfile", approot="api")
    ctx = dataclasses.replace(ctx, executor=Elsewhere())
    with pytest.raises(BuildError, match=r"^service 'www': type dockerfile needs a Dockerfile "
                                         r"in its approot \(api\)$"):
        build_service(ctx)


def test_the_build_file_processes_are_handed_on(make_ctx):
    ctx, _ = make_ctx({"Dockerfile": "FROM scratch\n"}, type="dockerfile",
                      processes={"web": "serve --port $PORT"})
    result = build_service(dataclasses.replace(ctx, executor=Elsewhere()))
    assert dict(result.processes) == {"web": ("/bin/sh", "-c", "serve --port $PORT")}
    assert result.http


def test_build_hooks_are_ignored_with_a_warning_and_release_kept():
    bf = parse("www:\n  type: dockerfile\n  prebuild: a\n  postbuild: make\n"
               "  release: migrate\n")
    spec = bf.services["www"]
    assert spec.type == "dockerfile" and not spec.prebuild and not spec.postbuild
    assert spec.release == "migrate"
    assert bf.warnings == tuple(
        f"dotcloud.yml line {n}: service 'www': '{hook}' is not used by dockerfile services "
        "(ignored; the Dockerfile's RUN steps are)" for n, hook in ((3, "prebuild"),
                                                                    (4, "postbuild")))
