"""Data services on the 3-node test swarm: each one a swarm task pinned to one
node with its volume there, the app's instances spread over the nodes and all
reaching it; the data and the node kept across pushes, unchanged or changed
definitions; `placement:` labels pin it; labels no node has are refused."""
import json
import subprocess
import time

import docker
import pytest
from platform_helpers import git_repo
from swarmkit import ROOT, in_node

from dotcloud import placement
from dotcloud.state import Store
from runtime import swarm, swarm_data

pytestmark = pytest.mark.swarm

DATA_IMAGE = "dotcloud/data:bookworm"

# A counter in redis, spoken in its own protocol (no package to install):
# /incr adds one, / reads it; each answer says which node served it.
COUNTER_APP = '''
import os, socket, urllib.parse

def redis(*args):
    url = urllib.parse.urlparse(os.environ["REDIS_URL"])
    with socket.create_connection((url.hostname, url.port), timeout=5) as s:
        f = s.makefile("rb")
        def call(*a):
            s.sendall(("*%d\\r\\n" % len(a) + "".join(
                "$%d\\r\\n%s\\r\\n" % (len(x.encode()), x) for x in a)).encode())
            line = f.readline().decode().strip()
            if line.startswith("$"):
                return "" if line == "$-1" else f.readline().decode().strip()
            return line.lstrip("+:")
        call("AUTH", url.username, url.password)
        return call(*args)

def application(environ, start_response):
    if environ["PATH_INFO"] == "/incr":
        value = redis("INCR", "hits")
    else:
        value = redis("GET", "hits") or "0"
    body = ("%s %s %s" % ({version!r}, value, socket.gethostname())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def data_app(version: str, instances: int = 3, data_extra: str = "", db: bool = True) -> dict:
    yml = (f"www:\n  type: python\n  instances: {instances}\n"
           f"cache:\n  type: redis\n{data_extra}")
    if db:
        yml += f"db:\n  type: postgresql\n{data_extra}"
    return {"wsgi.py": COUNTER_APP.format(version=version), "requirements.txt": "",
            "dotcloud.yml": yml}


@pytest.fixture(scope="module")
def nodes_engines(cluster):
    """Hostname -> a client of that node's own engine (volumes are per node)."""
    out = {f"n{i}": docker.DockerClient(base_url=f"unix://{ROOT}/n{i}/docker.sock", timeout=60)
           for i in range(1, cluster.size + 1)}
    yield out
    for c in out.values():
        c.close()


@pytest.fixture(scope="module")
def data_image(cluster):
    """The data image in the manager's engine (it pushes it to the registry)."""
    try:
        cluster.client.images.get(DATA_IMAGE)
        return DATA_IMAGE
    except docker.errors.ImageNotFound:
        pass
    if subprocess.run(["docker", "image", "inspect", DATA_IMAGE], capture_output=True).returncode:
        pytest.fail(f"no {DATA_IMAGE} on this machine: tests/docker/images.sh makes it")
    save = subprocess.Popen(["docker", "save", DATA_IMAGE], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "-H", cluster.docker_host, "load", "-q"], stdin=save.stdout,
                          capture_output=True, text=True, timeout=600)
    save.wait()
    assert load.returncode == 0, load.stderr
    return DATA_IMAGE


@pytest.fixture(scope="module")
def apps(splatform, nodes_engines, data_image):
    """Apps the tests push; destroyed at the end, with their volumes on every node."""
    made = []
    yield made
    for app in made:
        splatform.ssh("alice", "destroy", app, "--force")
    for engine in nodes_engines.values():
        for volume in swarm_data.volumes(engine, splatform.data):
            for _ in range(50):
                try:
                    volume.remove()
                    break
                except docker.errors.APIError:
                    time.sleep(0.2)     # its task's container is going


def push(splatform, apps, repo, app):
    if app not in apps:
        apps.append(app)
    r = splatform.push("alice", repo, app)
    return r


def active(platform, app: str) -> dict:
    """Instance label -> store row of the active generation's running instances."""
    store = Store(platform.data / "dotcloud.db")
    gen = store.app(app).generation
    return {i.label: i for i in store.instances(app, generation=gen) if i.desired == "run"}


def data_node(cluster, platform, app: str, service: str) -> str:
    """The hostname of the node the data service's task runs on (the swarm's word)."""
    deadline = time.monotonic() + 60
    while True:
        for host, tasks in swarm.placements(cluster.client, platform.data).items():
            for t in tasks:
                inst = active(platform, app).get(f"{service}.0")
                if t["app"] == app and inst is not None and \
                        t["instance"] == inst.spec.instance_name:
                    return host
        assert time.monotonic() < deadline, "the data service's task is not running"
        time.sleep(0.5)


def get(addr: str, port: int, path: str = "/") -> list[str]:
    """GET an instance at its node's address from the manager's namespace."""
    r = in_node(1, "curl", "-fsS", "-m", "10", f"http://{addr}:{port}{path}")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def www_instances(platform, app: str) -> list[tuple[str, int]]:
    out = []
    for label, inst in sorted(active(platform, app).items()):
        if label.startswith("www."):
            placed = placement.of(platform.data, inst.spec)
            assert placed is not None and placed.addr, (label, placed)
            out.append((placed.addr, inst.port))
    return out


def psql(platform, app: str, sql: str) -> str:
    url = active(platform, app)["www.0"].spec.env["DATABASE_URL"]
    r = in_node(1, "psql", f"{url}?sslmode=require", "-qAtc", sql)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def volume_on(engine, name: str) -> bool:
    try:
        engine.volumes.get(name)
        return True
    except docker.errors.NotFound:
        return False


@pytest.fixture(scope="module")
def counter(splatform, apps, tmp_path_factory):
    repo = git_repo(tmp_path_factory.mktemp("counter") / "repo", data_app("v1"))
    t0 = time.monotonic()
    r = push(splatform, apps, repo, "counter")
    assert r.code == 0, r.text
    print(f"first push with redis and postgresql on swarm: {time.monotonic() - t0:.1f}s")
    return repo


def test_data_services_run_on_one_node_and_the_app_spreads(splatform, cluster, nodes_engines,
                                                           counter):
    rows = active(splatform, "counter")
    for service in ("cache", "db"):
        host = data_node(cluster, splatform, "counter", service)
        node = cluster.nodes()[host]
        recorded = (splatform.data / "services" / "counter" / service / "node").read_text()
        assert recorded.strip() == node.id
        volume = (splatform.data / "services" / "counter" / service / "volume").read_text().strip()
        assert volume_on(nodes_engines[host], volume)
        assert not any(volume_on(e, volume) for h, e in nodes_engines.items() if h != host)
    # The app finds its data services at their node's address.
    assert rows["www.0"].spec.env["DOTCLOUD_CACHE_REDIS_HOST"] == \
        cluster.nodes()[data_node(cluster, splatform, "counter", "cache")].addr
    hosts = {h for h, tasks in swarm.placements(cluster.client, splatform.data).items()
             for t in tasks if t["app"] == "counter" and "www" in t["instance"]}
    assert len(hosts) >= 2, hosts
    # Written through each instance, read through the next one.
    www = www_instances(splatform, "counter")
    assert len(www) == 3
    seen = set()
    for i, (addr, port) in enumerate(www):
        _, written, node = get(addr, port, "/incr")
        other = www[(i + 1) % len(www)]
        _, read, _ = get(*other)
        assert read == written
        seen.add(node)
    assert len(seen) >= 2 and int(read) == 3
    assert psql(splatform, "counter",
                "CREATE TABLE notes (t text); INSERT INTO notes VALUES ('kept'); "
                "SELECT count(*) FROM notes") == "1"


def test_unchanged_data_services_are_kept_with_their_data(splatform, cluster, counter):
    before = {s: data_node(cluster, splatform, "counter", s) for s in ("cache", "db")}
    ids = {s: active(splatform, "counter")[f"{s}.0"].id for s in ("cache", "db")}
    git_repo(counter, data_app("v2"), message="v2")
    t0 = time.monotonic()
    r = splatform.push("alice", counter, "counter")
    assert r.code == 0, r.text
    print(f"push keeping redis and postgresql on swarm: {time.monotonic() - t0:.1f}s")
    assert "[cache.0] Definition unchanged: kept running" in r.text
    rows = active(splatform, "counter")
    assert {s: rows[f"{s}.0"].id for s in ("cache", "db")} == ids
    assert {s: data_node(cluster, splatform, "counter", s) for s in before} == before
    version, value, _ = get(*www_instances(splatform, "counter")[0])
    assert (version, value) == ("v2", "3")
    assert psql(splatform, "counter", "SELECT t FROM notes") == "kept"


def test_changed_definition_keeps_data_node_and_volume(splatform, cluster, nodes_engines,
                                                       counter):
    before = {s: data_node(cluster, splatform, "counter", s) for s in ("cache", "db")}
    volumes = {s: (splatform.data / "services" / "counter" / s / "volume").read_text().strip()
               for s in before}
    git_repo(counter, data_app("v3", data_extra="  limits: {memory: 256M}\n"), message="v3")
    t0 = time.monotonic()
    r = splatform.push("alice", counter, "counter")
    assert r.code == 0, r.text
    print(f"push restarting redis and postgresql on their node: {time.monotonic() - t0:.1f}s")
    assert "[db.0] Definition changed: stopping the old instance first" in r.text
    assert {s: data_node(cluster, splatform, "counter", s) for s in before} == before
    for s, host in before.items():
        assert volume_on(nodes_engines[host], volumes[s])
    version, value, _ = get(*www_instances(splatform, "counter")[1])
    assert (version, value) == ("v3", "3")
    assert psql(splatform, "counter", "SELECT t FROM notes") == "kept"


def test_restarting_a_data_service_keeps_its_node_and_data(splatform, cluster, counter):
    before = data_node(cluster, splatform, "counter", "cache")
    r = splatform.ssh("alice", "restart", "counter", "cache")
    assert r.code == 0, r.text
    assert data_node(cluster, splatform, "counter", "cache") == before
    deadline = time.monotonic() + 60
    while True:
        try:
            # Its launcher says where its task runs once it sees it running.
            status = json.loads(splatform.ssh("alice", "status", "counter", "--json").out)
            assert {i["instance"]: i["node"] for i in status["instances"]
                    if i["desired"] == "run"}["cache.0"] == before
            assert get(*www_instances(splatform, "counter")[2])[:2] == ["v3", "3"]
            break
        except AssertionError:
            assert time.monotonic() < deadline, "redis did not come back with its data"
            time.sleep(1)


def test_a_failed_deploy_starts_the_old_data_servers_again(splatform, cluster, counter):
    before = {s: data_node(cluster, splatform, "counter", s) for s in ("cache", "db")}
    old = {s: active(splatform, "counter")[f"{s}.0"].id for s in before}
    files = data_app("v4", data_extra="  limits: {memory: 200M}\n")
    files["wsgi.py"] = "import this_module_does_not_exist\n"
    git_repo(counter, files, message="v4 broken")
    r = splatform.push("alice", counter, "counter")
    assert r.code != 0, r.text
    assert "[db.0] Definition changed: stopping the old instance first" in r.text
    rows = active(splatform, "counter")
    assert {s: rows[f"{s}.0"].id for s in before} == old
    # The old servers run again on their node, on their volume, with their data.
    deadline = time.monotonic() + 120
    while True:
        try:
            assert get(*www_instances(splatform, "counter")[0])[:2] == ["v3", "3"]
            assert psql(splatform, "counter", "SELECT t FROM notes") == "kept"
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the old data servers did not come back"
            time.sleep(1)
    assert {s: data_node(cluster, splatform, "counter", s) for s in before} == before


def test_placement_pins_a_data_service_to_labelled_nodes(splatform, cluster, apps, tmp_path):
    repo = git_repo(tmp_path / "repo", data_app(
        "v1", instances=1, db=False, data_extra="  placement: {flavor: live}\n"))
    t0 = time.monotonic()
    r = push(splatform, apps, repo, "livedata")
    assert r.code == 0, r.text
    print(f"first push with redis, the data image in the registry: {time.monotonic() - t0:.1f}s")
    host = data_node(cluster, splatform, "livedata", "cache")
    assert cluster.nodes()[host].labels.get("flavor") == "live"
    addr, port = www_instances(splatform, "livedata")[0]
    assert get(addr, port, "/incr")[1] == "1"


def test_placement_no_node_has_is_refused(splatform, cluster, apps, tmp_path):
    repo = git_repo(tmp_path / "repo", data_app(
        "v1", instances=1, db=False, data_extra="  placement: {flavor: nowhere}\n"))
    r = push(splatform, apps, repo, "nowhere")
    assert r.code != 0
    assert "service 'cache': no node of the swarm with the labels flavor=nowhere can hold " \
           "its data" in r.text
    assert not [s for s in swarm.services(cluster.client, splatform.data)
                if s.attrs["Spec"]["Labels"].get("dotcloud.app") == "nowhere"]
    assert not (splatform.data / "services" / "nowhere" / "cache" / "node").exists()
