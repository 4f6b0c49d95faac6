"""Release images on a real engine: what goes in (the release and the cache
entries it runs with, at their host paths), what is reused, what is pruned,
and dockerfile services built with BuildKit."""
import subprocess
from pathlib import Path

import pytest
from dockerkit import built_on

from dotcloud.desired import ServiceManifest
from dotcloud.errors import BuildError
from dotcloud.settings import Settings
from runtime import docker_engine, docker_image

pytestmark = pytest.mark.docker
BASE = "python:3.12-slim"


@pytest.fixture
def release(tmp_path):
    """A data directory with one built release and one cache entry it runs with."""
    data = tmp_path / "data"
    rel = data / "releases" / "imgapp" / "v1"
    (rel / "src").mkdir(parents=True)
    (rel / "src" / "wsgi.py").write_text("print('from the release')\n")
    entry = data / "cache" / "python" / "k1"
    (entry / "bin").mkdir(parents=True)
    (entry / "bin" / "tool").write_text("#!/bin/sh\necho from the cache\n")
    (entry / "bin" / "tool").chmod(0o755)
    return data, rel, entry


def run(engine, image, *command) -> str:
    return engine.containers.run(image, list(command), remove=True, network_mode="none").decode()


def cleanup(engine, data, app):
    docker_image.prune(engine, data, app, keep=set())


def test_needed_paths_are_the_cache_entries_and_platform_files_a_service_runs(release):
    data, rel, entry = release
    cache = data / "cache"
    processes = {"web": [str(entry / "bin" / "python"), "-m", "gunicorn"],
                 "static": ["python3", str(Path(docker_image.__file__).resolve()), "x"]}
    env = {"PATH": f"{entry}/bin:/usr/bin", "VIRTUAL_ENV": str(entry), "OTHER": "/etc"}
    assert docker_image.needed_paths(cache, processes, env) == sorted(
        [entry, Path(docker_image.__file__).resolve()])
    assert docker_image.needed_paths(cache, {"web": ["/usr/bin/node", str(rel)]}, {}) == []


def test_release_image_holds_the_release_and_its_dependencies(engine, release):
    data, rel, entry = release
    lines = []
    try:
        image = docker_image.make(engine, data=data, app="imgapp", build=1, service="www",
                                  base=BASE, release_dir=rel, needs=[entry], log=lines.append)
        assert lines == [line for line in lines if "Image dotcloud/imgapp:v1-www made" in line]
        assert built_on(engine, image, BASE)
        got = engine.images.get(image)
        assert "dotcloud/imgapp:v1-www" in got.tags
        assert got.labels[docker_engine.LABEL_DATA] == docker_engine.data_id(data)
        assert got.labels["dotcloud.release"] == "1"
        # At their host paths, so every path the build wrote means the same inside.
        assert run(engine, image, "cat", str(rel / "src" / "wsgi.py")) == \
            "print('from the release')\n"
        assert run(engine, image, str(entry / "bin" / "tool")) == "from the cache\n"
        # Asked again (a data directory made anew at the same path), made again:
        # an image under the tag is never trusted to hold this release.
        (rel / "src" / "wsgi.py").write_text("print('made anew')\n")
        again = docker_image.make(engine, data=data, app="imgapp", build=1, service="www",
                                  base=BASE, release_dir=rel, needs=[entry])
        assert again != image and "dotcloud/imgapp:v1-www" in engine.images.get(again).tags
        assert run(engine, again, "cat", str(rel / "src" / "wsgi.py")) == "print('made anew')\n"
        # The next release reuses the dependency layer: only the release layer is new.
        (rel / "src" / "wsgi.py").write_text("print('v2')\n")
        second = docker_image.make(engine, data=data, app="imgapp", build=2, service="www",
                                   base=BASE, release_dir=rel, needs=[entry])
        layers = [engine.images.get(i).attrs["RootFS"]["Layers"] for i in (image, second)]
        assert layers[0][:-1] == layers[1][:-1] and layers[0][-1] != layers[1][-1]
    finally:
        cleanup(engine, data, "imgapp")


def test_an_image_of_another_data_directory_under_the_same_tag_is_not_reused(
        engine, release, tmp_path):
    data, rel, entry = release
    other = tmp_path / "other"
    try:
        theirs = docker_image.make(engine, data=other, app="imgapp", build=1, service="www",
                                   base=BASE, release_dir=rel, needs=[])
        mine = docker_image.make(engine, data=data, app="imgapp", build=1, service="www",
                                 base=BASE, release_dir=rel, needs=[entry])
        assert mine != theirs
        assert engine.images.get(theirs).id == theirs     # still there, for its instances
        # Each platform prunes only its own.
        assert docker_image.prune(engine, data, "imgapp", keep=set())
        assert engine.images.get(theirs)
    finally:
        cleanup(engine, data, "imgapp")
        cleanup(engine, other, "imgapp")


def test_prune_removes_releases_not_kept_and_their_unused_dependency_images(engine, release):
    data, rel, entry = release
    try:
        images = {b: docker_image.make(engine, data=data, app="imgapp", build=b, service="www",
                                       base=BASE, release_dir=rel, needs=[entry])
                  for b in (1, 2, 3)}
        removed = docker_image.prune(engine, data, "imgapp", keep={3})
        assert sorted(removed) == ["dotcloud/imgapp:v1-www", "dotcloud/imgapp:v2-www"]
        assert engine.images.get(images[3])
        # The dependency image goes with the last release made from it.
        removed = docker_image.prune(engine, data, "imgapp", keep=set())
        assert removed[0] == "dotcloud/imgapp:v3-www"
        assert removed[1].startswith("dotcloud/imgapp:deps-")
        assert not engine.images.list(filters={"label": "dotcloud.app=imgapp"})
    finally:
        cleanup(engine, data, "imgapp")


def test_unreachable_engine_fails_the_build_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    service = ServiceManifest("www", {"type": "python"}, str(tmp_path), True, {"web": ["x"]})
    with pytest.raises(BuildError, match="docker engine is not reachable"):
        docker_image.for_release(Settings(data=tmp_path, runtime="docker"), "a", 1, tmp_path,
                                 {"www": service}, lambda name: print)


def test_missing_base_image_fails_the_build_with_a_reason(engine, release):
    data, rel, _ = release
    service = ServiceManifest("www", {"type": "python"}, str(rel / "src"), True, {"web": ["x"]})
    settings = Settings(data=data, runtime="docker", docker_python_image="dotcloud-test/no:ne")
    with pytest.raises(BuildError, match=r"dotcloud-test/no:ne not found"):
        docker_image.for_release(settings, "imgapp", 1, rel, {"www": service},
                                 lambda name: print)


# -- dockerfile services -------------------------------------------------------

DOCKERFILE = f"""FROM {BASE}
ARG GREETING=unset
RUN echo "built with $GREETING" > /greeting
WORKDIR /srv
COPY app.py .
ENV APP_MODE=docker
EXPOSE 8080
CMD ["python3", "app.py"]
"""


def dockerfile_service(rel: Path, dockerfile: str = DOCKERFILE, **kw) -> ServiceManifest:
    src = rel / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "Dockerfile").write_text(dockerfile)
    (src / "app.py").write_text("print('hello')\n")
    processes = kw.get("processes", {})
    return ServiceManifest("www", {"type": "dockerfile"}, str(src), "web" in processes, processes)


def test_dockerfile_service_is_built_with_buildkit_and_described_by_its_image(engine, release):
    data, rel, _ = release
    service = dockerfile_service(rel)
    lines = []
    settings = Settings(data=data, runtime="docker")
    try:
        out = docker_image.for_release(settings, "imgapp", 4, rel, {"www": service},
                                       lambda name: lines.append, {"GREETING": "hi"})["www"]
        assert any(line.startswith("#") for line in lines), lines    # BuildKit's plain output
        assert "EXPOSEs 8080/tcp" in lines[-1] and "$PORT" in lines[-1]
        assert out.http and dict(out.processes) == {"web": ("python3", "app.py")}
        assert out.src == "/srv" and out.env["APP_MODE"] == "docker"
        image = engine.images.get(out.image)
        assert "dotcloud/imgapp:v4-www" in image.tags
        assert image.labels["dotcloud.release"] == "4"
        assert run(engine, out.image, "cat", "/greeting") == "built with hi\n"
    finally:
        cleanup(engine, data, "imgapp")


def test_dockerfile_without_port_is_a_worker_and_build_file_processes_win(engine, release):
    data, rel, _ = release
    settings = Settings(data=data, runtime="docker")

    def built(dockerfile, **kw):
        return docker_image.for_release(settings, "imgapp", 6, rel,
                                        {"www": dockerfile_service(rel, dockerfile, **kw)},
                                        lambda name: print)["www"]
    try:
        worker = built(f'FROM {BASE}\nCMD ["sleep", "1"]\n')
        assert not worker.http and dict(worker.processes) == {"worker": ("sleep", "1")}
        assert worker.src == "/"
        with pytest.raises(BuildError, match="its Dockerfile has no CMD or ENTRYPOINT, and "
                                             "dotcloud.yml no 'processes'"):
            built(f"FROM {BASE}\nRUN true\n")
        own = built(f"FROM {BASE}\nRUN true\n",
                    processes={"web": ("/bin/sh", "-c", "serve")})
        assert dict(own.processes) == {"web": ("/bin/sh", "-c", "serve")}
    finally:
        cleanup(engine, data, "imgapp")


def test_failing_dockerfile_fails_the_build_with_its_output(engine, release):
    data, rel, _ = release
    service = dockerfile_service(rel, f"FROM {BASE}\nRUN echo about to fail && exit 3\n")
    lines = []
    with pytest.raises(BuildError, match=r"^service 'www': docker build failed \(exit 1\)$"):
        docker_image.for_release(Settings(data=data, runtime="docker"), "imgapp", 5, rel,
                                 {"www": service}, lambda name: lines.append)
    assert any("about to fail" in line for line in lines)
    assert subprocess.run(["docker", "image", "inspect", "dotcloud/imgapp:v5-www"],
                          capture_output=True).returncode != 0


def test_sweep_removes_the_images_of_releases_that_are_gone(engine, release, tmp_path):
    data, rel, entry = release
    other = tmp_path / "other"
    try:
        for b in (1, 2):
            docker_image.make(engine, data=data, app="imgapp", build=b, service="www",
                              base=BASE, release_dir=rel, needs=[entry])
        foreign = docker_image.make(engine, data=other, app="imgapp", build=9, service="www",
                                    base=BASE, release_dir=rel, needs=[])
        removed = docker_image.sweep(engine, data, lambda app, build: build == 2)
        assert removed == ["dotcloud/imgapp:v1-www"]
        assert engine.images.get(foreign)     # another data directory's: never touched
        removed = docker_image.sweep(engine, data, lambda app, build: False)
        assert removed[0] == "dotcloud/imgapp:v2-www"
        assert len(removed) == 2 and removed[1].startswith("dotcloud/imgapp:deps-")
    finally:
        cleanup(engine, data, "imgapp")
        cleanup(engine, other, "imgapp")
