"""Whether an image has /bin/sh for the swarm tasks' OOM watcher
(runtime.swarm_oom.has_shell), asked of the engine that has the image: a
Dockerfile's FROM scratch has none, and its task runs unwatched."""
import io
import tarfile

import pytest

from runtime import swarm_oom


@pytest.mark.docker
def test_an_image_without_a_shell_is_told_and_the_answer_kept(engine, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("app")
        info.size, info.mode = 2, 0o755
        tar.addfile(info, io.BytesIO(b"x\n"))
    name = "dotcloud-test/noshell:swarm-oom"
    engine.api.import_image_from_data(buf.getvalue(), repository=name.split(":")[0],
                                      tag=name.split(":")[1])
    try:
        image = engine.images.get(name).id
        before = {c.id for c in engine.containers.list(all=True)}
        assert swarm_oom.has_shell(engine, image, tmp_path) is False
        assert {c.id for c in engine.containers.list(all=True)} == before    # none left
        assert (tmp_path / image.replace("sha256:", "")).read_text() == "no\n"
        assert swarm_oom.has_shell(engine, "python:3.12-slim") is True
    finally:
        engine.images.remove(name, force=True)
