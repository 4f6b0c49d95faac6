"""What the swarm tests look at and do to the test cluster of swarm.sh (a
module of its own: test modules never import from a conftest)."""
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from platform_helpers import Platform

import docker

from dotcloud import placement
from runtime import docker_engine, swarm

ROOT = Path(os.environ.get("SWARM_ROOT", "/tmp/dotcloud-swarm"))
SCRIPT = Path(__file__).resolve().parent / "swarm.sh"
NETNS = "swn-n"            # node I's network namespace is swn-nI
MANAGER = "10.213.0.11"
SOLO = "10.213.0.20"       # swarm.sh solo: a lone engine, namespace swn-solo


@dataclass
class Cluster:
    docker_host: str
    registry: str
    size: int
    client: docker.DockerClient = field(repr=False, default=None)

    @classmethod
    def read(cls) -> "Cluster":
        env = dict(line.split("=", 1) for line in (ROOT / "env").read_text().split())
        c = cls(env["DOCKER_HOST"], env["SWARM_REGISTRY"], int(env["SWARM_NODES"]))
        c.client = docker.DockerClient(base_url=c.docker_host, timeout=120)
        return c

    def close(self) -> None:
        self.client.close()

    def nodes(self) -> dict[str, swarm.Node]:
        return {n.hostname: n for n in swarm.nodes(self.client)}

    def remove_services(self, data: Path) -> None:
        for service in swarm.services(self.client, data):
            swarm.remove_service(self.client, service.name)
        # The tasks' OOM watcher (runtime.swarm_oom), one config per data directory.
        for config in self.client.configs.list(
                filters={"label": f"{docker_engine.LABEL_DATA}={docker_engine.data_id(data)}"}):
            if "-oom-watch-" in config.name:
                try:
                    config.remove()
                except docker.errors.APIError:
                    pass    # a service not gone yet: swarm.sh down takes it

    def tasks(self, data: Path, app: str) -> list[str]:
        """The nodes (hostnames) of the app's running tasks, one per task."""
        return sorted(h for h, tasks in swarm.placements(self.client, data).items()
                      for t in tasks if t["app"] == app)

    def stop_node(self, i: int) -> None:
        subprocess.run([SCRIPT, "stop", str(i)], check=True, timeout=60)

    def start_node(self, i: int) -> None:
        subprocess.run([SCRIPT, "start", str(i)], check=True, timeout=120)


def placements(data: Path, store_instances) -> dict[str, placement.Placement | None]:
    """Instance label -> its placement, for the instances given (store rows)."""
    return {i.label: placement.of(data, i.spec) for i in store_instances}


def in_node(i: int, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run argv in node I's network namespace."""
    return subprocess.run(["nsenter", f"--net=/run/netns/{NETNS}{i}", *argv],
                          capture_output=True, text=True, timeout=timeout)


# Says which release and which node answered (a host-network task's hostname
# is its node's, see swarm_launcher).
NODE_APP = '''
import socket
def application(environ, start_response):
    body = ({version!r} + " " + socket.gethostname()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def node_app(version: str, instances: int = 3, extra: str = "") -> dict:
    return {"wsgi.py": NODE_APP.format(version=version), "requirements.txt": "",
            "dotcloud.yml": f"www:\n  type: python\n  instances: {instances}\n{extra}"}


def swarm_platform(root: Path, docker_host: str, registry: str = "", address: str = MANAGER,
                   netns: str = f"{NETNS}1") -> Platform:
    """A platform on the swarm runtime in a node's namespace, as an operator
    runs it on the manager host (not started)."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "config.yml").write_text(f"registry: {registry}\n" if registry else "")
    return Platform(data=root / "data", home=root, address=address,
                    prefix=("env", f"DOCKER_HOST={docker_host}",
                            "nsenter", f"--net=/run/netns/{netns}"))
