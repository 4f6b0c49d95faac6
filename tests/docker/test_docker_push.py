"""The docker runtime end to end: pushes build in the base image, each release's
service becomes an image, instances are confined containers of it on the host
network, served through the router, supervised by the shim."""
import json
import os
import re
import signal
import time

import pytest
from dockerkit import app_containers, built_on, data_label
from loadgen import Load
from platform_helpers import git_repo

from dotcloud import appusers
from dotcloud.control import ControlUnavailable, request
from dotcloud.settings import load
from dotcloud.state import Store
from runtime import sweeper

pytestmark = pytest.mark.docker

# Reports where it runs and where it was built: /.dockerenv exists only in
# containers, and built.txt was written by the postbuild hook.
WHERE_APP = '''
import json, os, sys
def application(environ, start_response):
    body = json.dumps({{
        "version": {version!r},
        "in_container": os.path.exists("/.dockerenv"),
        "built": open("built.txt").read().strip(),
        "postinstall": open(os.environ["HOME"] + "/postinstall.txt").read().strip(),
        "python": os.path.realpath(sys.executable),
        "home": os.environ["HOME"],
        "home_writable": os.access(os.environ["HOME"], os.W_OK),
        "uid": os.getuid(),
        "src_writable": os.access(".", os.W_OK),
        "tmp_writable": os.access(os.environ.get("TMPDIR", "/tmp"), os.W_OK),
        "root_writable": os.access("/", os.W_OK),
        "mounts": [l.split()[1] for l in open("/proc/self/mounts")],
    }}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''
BUILDFILE = '''
www:
  type: python
  postbuild: echo build-uid $(id -u);
    if [ -f /.dockerenv ]; then echo container > built.txt; else echo host > built.txt; fi
  release: if [ -f /.dockerenv ]; then echo release-in-container; else echo release-on-host; fi
'''


POSTINSTALL = """#!/bin/sh
if [ -f /.dockerenv ]; then echo container; else echo host; fi > "$HOME/postinstall.txt"
"""


def where_app(version: str) -> dict:
    return {"wsgi.py": WHERE_APP.format(version=version), "dotcloud.yml": BUILDFILE,
            "requirements.txt": "", "postinstall": POSTINSTALL}


def answer(platform, host: str) -> dict:
    status, body, _ = platform.get(host)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def where(dplatform, tmp_path_factory):
    """The app `where`, pushed once; tests that push again wait for their own version."""
    repo = git_repo(tmp_path_factory.mktemp("where") / "repo", where_app("v1"))
    r = dplatform.push("alice", repo, "where")
    assert r.code == 0, r.text
    assert "[www] release-in-container" in r.err, r.err     # the release command too
    # The build container's steps ran as the app's own uid, as builds on the host do.
    user = appusers.for_app(load(dplatform.data, runtime="docker"), "where")
    assert f"[www] build-uid {user.uid if user is not None else os.getuid()}" in r.err, r.err
    return repo


def test_a_docker_build_leaves_a_release_and_cache_entry_sealed(dplatform, where):
    user = appusers.for_app(load(dplatform.data, runtime="docker"), "where")
    if user is None:
        pytest.skip("apps get users of their own only when the platform runs as root")
    release = dplatform.data / "releases" / "where" / "v1"
    entry = os.path.realpath(release / ".deps" / "www-python")
    for path in (release / "src", release / "src" / "wsgi.py", release / "src" / "built.txt",
                 entry, os.path.join(entry, "bin", "activate")):
        st = os.stat(path)
        assert st.st_uid == 0 and not st.st_mode & 0o222, path
    assert os.stat(release / "src").st_gid == user.gid


def test_push_builds_in_the_image_and_runs_a_container(dplatform, engine, where):
    got = answer(dplatform, "where.localhost")
    assert got["version"] == "v1"
    assert got["in_container"] is True
    assert got["built"] == "container"            # postbuild ran in the build container
    assert got["postinstall"] == "container"      # and postinstall in one at deploy time
    # The virtualenv was made by the image's interpreter, not the platform's.
    assert got["python"].startswith("/usr/bin/python3")
    assert got["home_writable"] and got["tmp_writable"]
    # The app's own uid (dotcloud.appusers) when the platform can drop to it.
    user = appusers.for_app(load(dplatform.data, runtime="docker"), "where")
    assert got["uid"] == (user.uid if user is not None else os.getuid())
    assert not got["src_writable"] and not got["root_writable"]
    # Nothing of the data directory is mounted but the instance's home.
    data = str(dplatform.data)
    assert [m for m in got["mounts"] if m.startswith(data)] == [got["home"]]
    containers = app_containers(engine, dplatform.data, "where")
    assert len(containers) == 1
    attrs = containers[0].attrs
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    # It runs the release's image, the base image plus the release.
    image = engine.images.get(attrs["Config"]["Image"])
    assert image.id == attrs["Image"] and "dotcloud/where:v1-www" in image.tags
    assert built_on(engine, image.id, "python:3.12-slim")
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert attrs["State"]["Running"]
    assert containers[0].labels["dotcloud.process"] == "web"
    # The stored spec says what runs, not how: the runtime wrapped it in the
    # launcher when it wrote the shim's spec, and names the container from it.
    store = Store(dplatform.data / "dotcloud.db")
    try:
        [inst] = [i for i in store.instances("where") if i.desired == "run"]
    finally:
        store.close()
    assert inst.spec.image == image.id
    assert not any("docker_launcher" in a for p in inst.spec.processes for a in p.argv)
    shim = json.loads((dplatform.data / "instances" / str(inst.id) / "shim.json").read_text())
    assert shim["processes"]["web"]["argv"][1].endswith("docker_launcher.py")
    assert shim["processes"]["web"]["argv"][-len(inst.spec.processes[0].argv):] == \
        list(inst.spec.processes[0].argv)
    settings = load(dplatform.data, runtime="docker")
    assert containers[0].name == sweeper.container_names(settings, inst.spec)["web"]


def test_second_push_under_load_loses_nothing(dplatform, engine, where):
    with Load(dplatform.http_port, "where.localhost", clients=4) as load:
        load.wait_ok(5)
        git_repo(where, where_app("v2"), "v2")
        r = dplatform.push("alice", where, "where")
        assert r.code == 0, r.text
        load.wait_ok(load.ok + 5)
    assert load.failures == 0, load.errors[:5]
    assert answer(dplatform, "where.localhost")["version"] == "v2"
    # The load generator keeps only the start of each body: the version comes first.
    versions = {re.search(r'"version": "(v\d)"', b).group(1) for b in load.bodies}
    assert versions <= {"v1", "v2"} and "v2" in versions
    # The old generation's container is gone once it was drained and stopped.
    deadline = time.monotonic() + 60
    while len(app_containers(engine, dplatform.data, "where")) != 1:
        assert time.monotonic() < deadline, "the old container was never removed"
        time.sleep(0.2)


def test_killed_container_is_restarted_by_the_shim(dplatform, engine, where):
    before = app_containers(engine, dplatform.data, "where")
    assert len(before) == 1
    before[0].kill()
    deadline = time.monotonic() + 90
    while True:
        now = app_containers(engine, dplatform.data, "where")
        if now and now[0].id != before[0].id:
            break
        assert time.monotonic() < deadline, "no new container after the kill"
        time.sleep(0.2)
    deadline = time.monotonic() + 60
    while True:
        try:
            if answer(dplatform, "where.localhost")["in_container"]:
                break
        except (AssertionError, OSError):
            pass
        assert time.monotonic() < deadline, "the app never answered again"
        time.sleep(0.2)
    r = dplatform.ssh("alice", "status", "where", "--json")
    assert r.code == 0, r.text
    log = (dplatform.data / "logs" / "where" / "www.0.log").read_text()
    assert "killed by SIGKILL" in log


def test_killed_runtime_leaves_the_container_serving_and_adopts_it(dplatform, engine, where):
    before = [c.id for c in app_containers(engine, dplatform.data, "where")]
    runtime_json = dplatform.data / "run" / "runtime.json"
    old = json.loads(runtime_json.read_text())["pid"]
    os.kill(old, signal.SIGKILL)
    assert answer(dplatform, "where.localhost")["in_container"] is True
    deadline = time.monotonic() + 60
    while True:
        try:
            pid = json.loads(runtime_json.read_text())["pid"]
            if pid != old and request(dplatform.data / "run" / "runtime.sock",
                                      {"op": "reconcile"}, timeout=30).get("ok"):
                break
        except (OSError, ValueError, ControlUnavailable):
            pass
        assert time.monotonic() < deadline, "no new runtime daemon"
        time.sleep(0.2)
    assert [c.id for c in app_containers(engine, dplatform.data, "where")] == before
    assert answer(dplatform, "where.localhost")["in_container"] is True


NODE_SERVER = '''
const http = require("http");
const fs = require("fs");
http.createServer((req, res) => {
  res.end(JSON.stringify({node: process.execPath, version: process.version,
                          in_container: fs.existsSync("/.dockerenv")}));
}).listen(process.env.PORT, "127.0.0.1");
'''


def test_nodejs_and_static_services_run_in_their_images(dplatform, engine, tmp_path):
    files = {"api/server.js": NODE_SERVER, "api/package.json": '{"name": "api"}',
             "site/index.html": "<h1>static in docker</h1>",
             "dotcloud.yml": "www:\n  type: static\n  approot: site\n"
                             "api:\n  type: nodejs\n  approot: api\n"}
    repo = git_repo(tmp_path / "mixed", files)
    r = dplatform.push("alice", repo, "mixed")
    assert r.code == 0, r.text
    api = answer(dplatform, "api.mixed.localhost")
    assert api["in_container"] is True and api["node"] == "/usr/bin/node"
    status, body, _ = dplatform.get("mixed.localhost")
    assert status == 200 and "static in docker" in body
    images = {c.labels["dotcloud.instance"].split("-", 1)[1]: c.attrs["Image"]
              for c in app_containers(engine, dplatform.data, "mixed")}
    assert set(images) == {"www.0", "api.0"}
    assert built_on(engine, images["www.0"], "python:3.12-slim")
    assert built_on(engine, images["api.0"], "node:22-slim")
    assert "dotcloud/mixed:v1-api" in engine.images.get(images["api.0"]).tags


def test_failing_build_step_in_the_image_rejects_the_push(dplatform, where):
    git_repo(where, {"dotcloud.yml": "www:\n  type: python\n  postbuild: echo in-image; exit 4\n"},
             "bad postbuild")
    r = dplatform.push("alice", where, "where")
    assert r.code != 0
    assert "(build failed: postbuild failed (exit 4))" in r.err, r.err
    assert "[www] in-image" in r.err
    assert answer(dplatform, "where.localhost")["version"] == "v2"


def test_release_crashing_in_its_container_is_rejected(dplatform, engine, where):
    before = [c.id for c in app_containers(engine, dplatform.data, "where")]
    git_repo(where, dict(where_app("v3"), **{"wsgi.py": "import no_such_module_here\n"}), "crash")
    r = dplatform.push("alice", where, "where")
    assert r.code != 0
    assert "[remote rejected] main -> main (deploy failed: www.0" in r.err, r.err
    assert "no_such_module_here" in r.err, "the container's last log lines are shown"
    assert answer(dplatform, "where.localhost")["version"] == "v2"
    deadline = time.monotonic() + 60
    while [c.id for c in app_containers(engine, dplatform.data, "where")] != before:
        assert time.monotonic() < deadline, "the failed release's container was not removed"
        time.sleep(0.2)


# A server of any language would do: the Dockerfile says how it is built and run.
DOCKERFILE_SERVER = '''
import http.server, json, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"port": os.environ["PORT"], "mode": os.environ["MODE"],
                           "built": open("/built").read().strip(), "cwd": os.getcwd(),
                           "uid": os.getuid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))),
                                Handler).serve_forever()
'''
DOCKERFILE = '''FROM python:3.12-slim
ARG GREETING=none
RUN echo "$GREETING" > /built
WORKDIR /srv/dfapp
COPY server.py .
ENV MODE=from-the-image
EXPOSE 8080
CMD ["python3", "-u", "server.py"]
'''


def test_dockerfile_service_is_built_from_its_dockerfile_and_served(dplatform, engine, tmp_path):
    assert dplatform.ssh("alice", "create", "dfapp").code == 0
    r = dplatform.ssh("alice", "var", "set", "dfapp", "GREETING=from-a-variable")
    assert r.code == 0, r.text     # a build argument of the next build
    files = {"web/Dockerfile": DOCKERFILE, "web/server.py": DOCKERFILE_SERVER,
             "dotcloud.yml": "www:\n  type: dockerfile\n  approot: web\n"
                             "  release: echo release in $(cat /built) at $(pwd) as $MODE\n"}
    repo = git_repo(tmp_path / "dfapp", files)
    r = dplatform.push("alice", repo, "dfapp")
    assert r.code == 0, r.text
    assert "[www] The image EXPOSEs 8080/tcp" in r.err and "$PORT" in r.err
    # The release command runs in the service's own image, with its environment.
    assert "[www] release in from-a-variable at /srv/dfapp as from-the-image" in r.err, r.err
    got = answer(dplatform, "dfapp.localhost")
    # The image's WORKDIR, which the host has not (the launcher must not chdir there).
    assert not os.path.exists("/srv/dfapp")
    assert got["mode"] == "from-the-image" and got["cwd"] == "/srv/dfapp"
    assert got["built"] == "from-a-variable"
    assert got["port"] != "8080"            # the instance's own port, on the host network
    containers = app_containers(engine, dplatform.data, "dfapp")
    assert len(containers) == 1
    image = engine.images.get(containers[0].attrs["Image"])
    assert "dotcloud/dfapp:v1-www" in image.tags
    assert containers[0].attrs["HostConfig"]["ReadonlyRootfs"]


def test_failing_dockerfile_rejects_the_push_with_its_output(dplatform, tmp_path):
    files = {"Dockerfile": "FROM python:3.12-slim\nRUN echo broken-step && exit 7\n",
             "dotcloud.yml": "www:\n  type: dockerfile\n"}
    r = dplatform.push("alice", git_repo(tmp_path / "dfbad", files), "dfbad")
    assert r.code != 0
    assert "broken-step" in r.err
    assert "(build failed: service 'www': docker build failed (exit 1))" in r.err, r.err


def test_images_are_pruned_with_their_releases(dplatform, engine, tmp_path):
    config = dplatform.data / "config.yml"
    assert not config.exists()
    config.write_text("keep_releases: 1\n")      # read by each pipeline
    try:
        repo = tmp_path / "keep"
        for version in ("v1", "v2"):
            git_repo(repo, {"index.html": version, "dotcloud.yml": "www:\n  type: static\n"},
                     version)
            r = dplatform.push("alice", repo, "keep")
            assert r.code == 0, r.text
    finally:
        config.unlink()
    assert dplatform.get("keep.localhost")[1] == "v2"

    def releases():
        images = engine.images.list(filters={"label": [data_label(dplatform.data),
                                                       "dotcloud.app=keep"]})
        return sorted(i.labels.get("dotcloud.release", "deps") for i in images)
    # Pruned after the deploy, unless v1's container was still stopping: then
    # by the runtime's sweeper (run here rather than waited for).
    settings = load(dplatform.data, runtime="docker")
    deadline = time.monotonic() + 60
    while releases() != ["2", "deps"]:
        assert time.monotonic() < deadline, releases()
        sweeper.sweep_once(settings, Store(settings.paths.db))
        time.sleep(0.2)
    assert dplatform.get("keep.localhost")[1] == "v2"
