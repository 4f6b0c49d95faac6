"""Fixtures of the docker runtime tests: a real engine with the base images, and
a platform started with `--runtime docker`.

Without an engine (or without the images) the tests are skipped with the
reason, except under CI (`CI` set), where that is a failure: CI must run
them (.ci/run starts dockerd and builds the images with images.sh).
"""
import os
import shutil

import pytest
from dockerkit import data_label
from platform_helpers import Platform

from dotcloud.settings import Settings
from runtime import docker_engine, docker_image

IMAGES = (Settings.docker_python_image, Settings.docker_node_image)


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"docker tests must run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine():
    """A client of the running engine, once the base images are known to be there."""
    try:
        client = docker_engine.connect()
        for image in IMAGES:
            docker_engine.image_id(client, image)
    except docker_engine.EngineError as e:
        _unavailable(f"{e} (start one: dockerd --bridge=none --iptables=false "
                     "--storage-driver=overlay2; then tests/docker/images.sh)")
    yield client
    client.close()


@pytest.fixture(scope="session")
def dplatform(engine, tmp_path_factory):
    """One platform on the docker runtime, shared by the end-to-end tests."""
    root = tmp_path_factory.mktemp("dplatform")
    (root / "data").mkdir()
    p = Platform(data=root / "data", home=root)
    p.start("--runtime", "docker")
    p.add_user("alice", admin=True)
    yield p
    p.stop()
    for container in engine.containers.list(all=True, filters={"label": data_label(p.data)}):
        docker_engine.remove(engine, container.id)     # a launcher may be removing it too
    docker_image.sweep(engine, p.data, lambda app, build: False)    # its release images
    shutil.rmtree(root / "data" / "releases", ignore_errors=True)
