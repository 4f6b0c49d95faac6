"""`run` under the swarm runtime is a one-off swarm task: a service of the
release image that is never restarted, on a node the instances may use, as
the app's uid, confined and limited as they are, its output streamed back
and its exit status returned, removed at its end and on hang-up (and by the
sweep when its launcher died). A task the kernel killed for memory says so
in `run` and, for an instance, in `status`, and so does a worker killed while
its task lives on (the task's own watcher tells, see runtime.swarm_oom; no
engine of a node is asked)."""
import json
import os
import shlex
import subprocess
import time
from types import SimpleNamespace

import pytest
from platform_helpers import git_repo

from dotcloud import appusers
from dotcloud.desired import InstanceSpec, ProcessSpec
from dotcloud.errors import DotcloudError
from dotcloud.resources import Limits
from dotcloud.settings import Settings, load
from runtime import docker_engine, swarm, swarm_launcher, swarm_run

MiB = 1024 * 1024
NODES = ("n2", "n3")        # flavor=live: never the manager, n1

SERVER = '''
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/bomb":
            hog = b"x" * (400 * 1024 * 1024)    # written, so really used
        if self.path == "/worker":              # a worker dies, the server lives on
            pid = os.fork()
            if pid == 0:
                hog = b"x" * (400 * 1024 * 1024)
                os._exit(0)
            os.waitpid(pid, 0)
        body = b"up"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


def app_files() -> dict:
    return {"server.py": SERVER,
            "dotcloud.yml": "www:\n  type: custom\n  limits: {memory: 64M}\n"
                            "  placement: {flavor: live}\n"
                            "  processes:\n    web: python3 server.py\n"}


def ssh(platform, *words, **kw):
    return platform.ssh("alice", shlex.join(words), **kw)


def run_services(cluster, data) -> list:
    return [s for s in swarm.services(cluster.client, data)
            if swarm.LABEL_RUN in (s.attrs["Spec"].get("Labels") or {})]


def start_endless_run(platform, app):
    """An ssh client running a command that says `started` and never ends."""
    argv = platform.ssh_command("alice").split() + [
        "-p", str(platform.ssh_port), f"dotcloud@{platform.address}",
        shlex.join(["run", app, "www", "--", "sh", "-c", "echo started; sleep 3000"])]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_until(predicate, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


def spec(tmp_path, **kw) -> InstanceSpec:
    return InstanceSpec(app="app", service="www", number=0, generation=1, port=20000,
                        service_type="python", processes=[ProcessSpec("web", ["a"], "/src")],
                        env=kw.pop("env", {"A": "b"}), home=str(tmp_path / "g1-www.0"),
                        log="app/www.0.log", limits=Limits(memory_bytes=64 * MiB),
                        user=(60001, 60001), image=kw.pop("image", "sha256:abc"),
                        placement={"flavor": "live"}, **kw)


def test_run_launcher_argv_is_the_instance_definition_never_restarted(tmp_path):
    s = Settings(data=tmp_path / "data", runtime="swarm", registry="10.213.0.11:5000")
    launch = swarm_run.launcher(s, spec(tmp_path), ["python3", "-c", "1"],
                                reason_file=tmp_path / "r.exit")
    assert launch.argv[1].endswith("runtime/swarm_oneoff.py")
    opts = swarm_launcher.parse(launch.argv[2:])
    assert opts.command == ["python3", "-c", "1"] and opts.image == "sha256:abc"
    assert opts.user == "60001:60001" and opts.memory == 64 * MiB and opts.workdir == "/src"
    assert opts.constraint == ["node.labels.flavor==live"]
    assert opts.exit_reason_file == str(tmp_path / "r.exit") and opts.service == launch.container
    labels = dict(item.split("=", 1) for item in opts.label)
    assert labels[swarm.LABEL_RUN] == "www" and swarm.LABEL_INSTANCE not in labels
    assert labels[docker_engine.LABEL_DATA] == docker_engine.data_id(s.data)
    assert launch.env == {"A": "b"}
    # Two runs at once are two services.
    again = swarm_run.launcher(s, spec(tmp_path), ["true"], reason_file=tmp_path / "r2")
    assert again.container != launch.container
    # No registry, or data servers on the manager's loopback: the manager only.
    local = swarm_run.launcher(Settings(data=tmp_path / "data", runtime="swarm"),
                               spec(tmp_path), ["true"], reason_file=tmp_path / "r3")
    assert "node.role==manager" in swarm_launcher.parse(local.argv[2:]).constraint
    with pytest.raises(DotcloudError, match="release has no image"):
        swarm_run.launcher(s, spec(tmp_path, image=None), ["true"], reason_file=tmp_path / "r")


def _service(created: float, states: list[tuple[str, float]]):
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000000000Z"  # noqa
    return SimpleNamespace(
        attrs={"CreatedAt": stamp(created)},
        tasks=lambda: [{"Status": {"State": s, "Timestamp": stamp(at)}} for s, at in states])


def test_the_sweep_takes_a_run_service_only_once_nobody_waits_for_it():
    now = time.time()
    over = swarm._run_over
    assert not over(_service(now - 5, []), 3600)                         # being placed
    assert not over(_service(now - 5, [("running", now - 4)]), 3600)     # running
    assert not over(_service(now - 5, [("complete", now - 1)]), 3600)    # its launcher's
    assert over(_service(now - 600, [("failed", now - 500)]), 3600)      # left behind
    assert over(_service(now - 4000, [("running", now - 3999)]), 3600)   # past any timeout


@pytest.fixture(scope="module")
def runapp(splatform, tmp_path_factory):
    repo = git_repo(tmp_path_factory.mktemp("runapp") / "repo", app_files())
    r = splatform.push("alice", repo, "runapp")
    assert r.code == 0, r.text
    return "runapp"


@pytest.mark.swarm
def test_run_is_a_one_off_task_on_a_node_as_the_app(splatform, cluster, runapp):
    script = ("import os, socket, sys; print(socket.gethostname()); print(os.getuid());"
              " print(os.environ['DOTCLOUD_SERVICE_NAME']); print('to stderr', file=sys.stderr);"
              " sys.exit(3)")
    t0 = time.monotonic()
    r = ssh(splatform, "run", runapp, "www", "--", "python3", "-c", script)
    print(f"\nrun as a one-off swarm task: {time.monotonic() - t0:.1f}s on {r.out.split()[:1]}")
    assert r.code == 3, r.text
    node, uid, service = r.out.split()
    assert node in NODES, r.text                 # a swarm task, where the instances may run
    user = appusers.for_app(load(splatform.data, runtime="swarm"), runapp)
    assert int(uid) == (user.uid if user is not None else os.getuid())
    assert service == "www" and "to stderr" in r.err, r.text
    assert run_services(cluster, splatform.data) == []      # removed at its end
    for _ in range(4):
        t0 = time.monotonic()
        r = ssh(splatform, "run", runapp, "www", "--", "hostname")
        assert r.code == 0, r.text
        print(f"run hostname as a one-off swarm task: {time.monotonic() - t0:.1f}s on "
              f"{r.out.strip()} (load {os.getloadavg()[0]:.1f})")


@pytest.mark.swarm
def test_run_output_streams_while_the_task_runs_and_stdin_is_refused(splatform, runapp):
    script = "echo one; sleep 1; echo two >&2; sleep 1; echo three"
    r = ssh(splatform, "run", runapp, "www", "--", "sh", "-c", script, input=b"typed\n")
    assert r.code == 0, r.text
    assert r.out.splitlines() == ["one", "three"], r.text
    assert "two" in r.err and "a swarm task has no stdin" in r.err, r.text


@pytest.mark.swarm
def test_run_output_past_the_instances_log_size_arrives_whole_and_in_order(splatform, runapp):
    # 3 MB: three times what an instance's log file holds before it rotates;
    # a follower lagging behind a rotation lost 40% of 6 MB.
    script = "import sys\nfor i in range(30000): sys.stdout.write('%06d ' % i + 'x' * 93 + '\\n')"
    t0 = time.monotonic()
    r = ssh(splatform, "run", runapp, "www", "--", "python3", "-c", script)
    print(f"\nrun printing 3 MB as a one-off swarm task: {time.monotonic() - t0:.1f}s")
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["%06d " % i + "x" * 93 for i in range(30000)], r.err


@pytest.mark.swarm
def test_run_errors_on_the_swarm(splatform, cluster, runapp):
    r = ssh(splatform, "run", runapp, "www", "--", "no-such-command")
    assert r.code == 127, r.text
    assert "[swarm] no-such-command: command not found in the image" in r.err, r.text
    r = ssh(splatform, "run", runapp, "www", "--", "python3", "-c",
            "hog = b'x' * (400 * 1024 * 1024)")
    assert r.code == 137, r.text
    assert "python3: out of memory (limit 64M)" in r.err, r.text
    r = ssh(splatform, "run", runapp, "www", "--timeout", "2", "--", "sleep", "60")
    assert r.code == 124, r.text
    assert "sleep did not finish in 2s; killed" in r.err, r.text
    wait_until(lambda: run_services(cluster, splatform.data) == [], timeout=30,
               what="the run services to go")


@pytest.mark.swarm
def test_a_hang_up_removes_the_run_service(splatform, cluster, runapp):
    client = start_endless_run(splatform, runapp)
    try:
        assert client.stdout.readline() == b"started\n"
        [service] = run_services(cluster, splatform.data)
        template = service.attrs["Spec"]["TaskTemplate"]
        assert template["RestartPolicy"]["Condition"] == "none"
        assert template["Resources"]["Limits"]["MemoryBytes"] == 64 * MiB
        assert template["ContainerSpec"]["ReadOnly"] is True
        assert template["ContainerSpec"]["CapabilityDrop"] == ["ALL"]
    finally:
        client.kill()
        client.wait()
    wait_until(lambda: run_services(cluster, splatform.data) == [], timeout=30,
               what="the run service to go")


@pytest.mark.swarm
def test_a_task_killed_for_memory_says_so_in_status(splatform, tmp_path):
    repo = git_repo(tmp_path / "oom", app_files())
    r = splatform.push("alice", repo, "swoom")
    assert r.code == 0, r.text
    try:
        splatform.get("swoom.localhost", "/bomb", timeout=20)
    except OSError:
        pass   # the task died mid-request: that is the point

    def oom_exit():
        r = ssh(splatform, "status", "swoom", "--json")
        assert r.code == 0, r.text
        return next((i for i in json.loads(r.out)["instances"]
                     if i["last_exit_reason"] and i["last_exit"] is not None), None)
    inst = wait_until(oom_exit, what="the OOM exit")
    assert inst["last_exit_reason"] == "out of memory (limit 64M)", inst
    assert inst["last_exit"] == 137 and inst["oom_kills"] >= 1, inst
    assert inst["processes"]["web"]["last_exit_reason"] == "out of memory (limit 64M)"
    assert "out of memory (limit 64M)" in ssh(splatform, "status", "swoom").out
    wait_until(lambda: splatform.get("swoom.localhost")[0] == 200, what="the restart")
    assert "[swarm] out of memory (limit 64M)" in ssh(splatform, "logs", "swoom", "-n", "100").out


@pytest.mark.swarm
def test_a_worker_killed_for_memory_while_its_task_lives_on_is_counted(splatform, tmp_path):
    repo = git_repo(tmp_path / "oomw", app_files())
    r = splatform.push("alice", repo, "swoomw")
    assert r.code == 0, r.text
    assert splatform.get("swoomw.localhost", "/worker", timeout=20)[0] == 200

    def counted():
        r = ssh(splatform, "status", "swoomw", "--json")
        assert r.code == 0, r.text
        return next((i for i in json.loads(r.out)["instances"] if i.get("oom_kills")), None)
    inst = wait_until(counted, what="the worker's OOM kill in status")
    assert inst["oom_kills"] >= 1 and inst["last_exit"] is None, inst     # it lives on
    assert splatform.get("swoomw.localhost")[0] == 200
    log = ssh(splatform, "logs", "swoomw", "-n", "100").out
    assert "a process of this instance was killed: out of memory (limit 64M)" in log, log
    assert "dotcloud-oom-kill" not in log, log          # the watcher's line is not the app's


@pytest.mark.swarm
def test_the_sweep_keeps_a_running_run_and_takes_one_past_its_age(splatform, cluster, runapp):
    client = start_endless_run(splatform, runapp)
    try:
        assert client.stdout.readline() == b"started\n"
        [service] = run_services(cluster, splatform.data)
        instances = {s.attrs["Spec"]["Labels"].get(swarm.LABEL_INSTANCE)
                     for s in swarm.services(cluster.client, splatform.data)} - {None}
        # Its launcher waits for it: kept.
        assert swarm.sweep(cluster.client, splatform.data, instances, run_max_age=3600) == []
        assert run_services(cluster, splatform.data) != []
        # Older than a run may be (its SSH session and launcher died with -9): taken.
        assert swarm.sweep(cluster.client, splatform.data, instances,
                           run_max_age=0) == [service.name]
        assert client.wait(60) != 0          # the command went with its service
    finally:
        client.kill()
        client.wait()
    assert run_services(cluster, splatform.data) == []


@pytest.mark.swarm
def test_the_sweep_takes_the_oom_watchers_configs_of_older_versions(cluster, tmp_path):
    from runtime import swarm_oom
    data_id = docker_engine.data_id(tmp_path)
    labels = {docker_engine.LABEL_DATA: data_id}
    current = swarm_oom.config(cluster.client, labels)
    old = cluster.client.configs.create(name=f"dc-{data_id}-oom-watch-0123456789ab",
                                        data=b"echo old\n", labels=labels)
    try:
        assert swarm_oom.sweep(cluster.client, tmp_path) == [old.name]
        assert [c.name for c in cluster.client.configs.list(
            filters={"label": f"{docker_engine.LABEL_DATA}={data_id}"})] == [current["ConfigName"]]
    finally:
        for c in cluster.client.configs.list(
                filters={"label": f"{docker_engine.LABEL_DATA}={data_id}"}):
            c.remove()
