"""A launcher whose task crashed, on the 3-node test swarm: it exits with the
task's status once the task's whole log is copied and its service removed,
without waiting for the swarm's restart of the task to report its end; the
next launcher of the instance starts its task only once every task of the
instance's last service ended (one port: two tasks at once could not both
bind it). The launchers run by hand, as the shim runs them, on the manager
(no registry) with the base python image."""
import random
import signal
import subprocess
import sys
import time

import docker
import pytest
from swarmkit import in_node

from dotcloud.settings import Settings
from runtime import docker_engine, swarm, swarm_launcher

pytestmark = pytest.mark.swarm

LINES = 400
# Binds the port (SO_REUSEADDR: a closed connection's TIME_WAIT is no
# holder), says so in LINES lines and a last one, and crashes with 3; 4 if
# the port is held (by a task of the instance still running).
CRASHER = f'''
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError as e:
    print("port in use:", e, flush=True)
    sys.exit(4)
for i in range({LINES}):
    print(f"line {{i:04d}} of the crashing task")
print("the last line before the crash", flush=True)
sys.exit(3)
'''
# Holds the port and, stopped, takes argv[2] seconds more to let it go.
HOLDER = '''
import signal, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
def stop(*_):
    time.sleep(float(sys.argv[2]))
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("holding", flush=True)
while True:
    signal.pause()
'''


@pytest.fixture
def crash(cluster, tmp_path, monkeypatch):
    """A function running one launcher of instance g1-www.0 (its task runs
    CRASHER on the manager) to its end; its service's name."""
    monkeypatch.setenv("DOCKER_HOST", cluster.docker_host)
    settings = Settings(data=tmp_path / "data", runtime="swarm", stop_grace=30.0)
    settings.paths.run.mkdir(parents=True)
    image = cluster.client.images.get(settings.docker_python_image).id
    port = random.randint(42000, 42999)
    procs = {"web": {"argv": ["python3", "-c", CRASHER, str(port)], "cwd": "/", "env": {}}}
    argv = swarm_launcher.wrap(settings, app="crash", service="www", instance="g1-www.0",
                               processes=procs, image=image)["web"]["argv"]
    name = swarm.service_name(settings.data, "g1-www.0", "web")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "DOCKER_HOST": cluster.docker_host}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=env, cwd=settings.data, capture_output=True,
                              text=True, timeout=300)

    def start() -> subprocess.Popen:
        return subprocess.Popen(argv, env=env, cwd=settings.data, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    run.name, run.port, run.image, run.data, run.start = name, port, image, settings.data, start
    yield run
    cluster.remove_services(settings.data)
    try:
        cluster.client.images.remove(f"dotcloud/image:{image.split(':')[-1][:16]}",
                                     noprune=True)
    except docker.errors.APIError:
        pass                         # the launcher never tagged it


def gone(client, name: str) -> bool:
    try:
        client.services.get(name)
    except docker.errors.NotFound:
        return True
    return False


def crashed_whole(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    lines = [line for line in r.stdout.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i:04d} of the crashing task" for i in range(LINES)], r.stdout[-500:]
    assert r.stdout.rstrip().endswith("the last line before the crash"), r.stdout[-500:]
    assert "[swarm] its task on n1 exited with status 3" in r.stderr, r.stderr


def test_after_a_crash_the_log_is_whole_and_the_service_gone_at_exit(cluster, crash):
    r = crash()
    crashed_whole(r)
    assert gone(cluster.client, crash.name)
    # Again at once: the swarm's restart of the first task (prepared, or
    # started when the crash was seen late) neither holds the port nor runs
    # beside the second.
    r = crash()
    crashed_whole(r)
    assert gone(cluster.client, crash.name)


def hold(cluster, crash, linger: float) -> None:
    """A service of the instance's name whose task holds its port on the
    manager, removed: its task still holds the port for 2 s (the gossip
    delay of its node) and `linger` seconds after its SIGTERM."""
    labels = {docker_engine.LABEL_DATA: docker_engine.data_id(crash.data)}
    cluster.client.services.create(
        crash.image, ["python3", "-c", HOLDER, str(crash.port), str(linger)],
        name=crash.name, labels=labels, networks=["host"],
        constraints=["node.role==manager"], stop_grace_period=60_000_000_000)
    deadline = time.monotonic() + 120
    probe = [sys.executable, "-c", "import socket, sys; socket.create_connection("
             f"('127.0.0.1', {crash.port}), timeout=2)"]
    while in_node(1, *probe).returncode != 0:
        assert time.monotonic() < deadline, "the holder never listened"
        time.sleep(0.5)
    swarm.remove_service(cluster.client, crash.name)


def test_the_next_launcher_waits_until_the_last_task_of_its_instance_ended(cluster, crash):
    hold(cluster, crash, linger=1)
    r = crash()
    crashed_whole(r)
    assert "port in use" not in r.stdout
    assert gone(cluster.client, crash.name)


def test_a_launcher_stopped_while_it_waits_for_the_last_task_creates_nothing(cluster, crash):
    # (The holder lingers 20 s: the launcher's wait for it, 29 s at most, is
    # under way when the launcher is stopped.)
    hold(cluster, crash, linger=20)
    p = crash.start()
    said = []
    for line in p.stderr:
        said.append(line)
        if "the last task of the instance is still ending" in line:
            break
    assert said and "still ending" in said[-1], "".join(said)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, "".join(said) + err
    assert "created" not in "".join(said) + err
    assert gone(cluster.client, crash.name)
