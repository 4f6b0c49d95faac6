"""A node lost under load: its instances move to the other nodes, the route
table follows, no request fails. Last of the swarm tests (the file name):
the node comes back empty, and the swarm gives it the next tasks until the
nodes are even again, which would bunch the instances of later pushes."""
import time

import pytest
from platform_helpers import git_repo
from swarmkit import node_app
from test_swarm_deploys import load_on, routed, running, where

from dotcloud import placement

pytestmark = pytest.mark.swarm


def test_lost_node_instances_move_and_no_request_fails(splatform, cluster, tmp_path):
    repo = git_repo(tmp_path / "lost", node_app("v1"))
    r = splatform.push("alice", repo, "lost")
    assert r.code == 0, r.text
    nodes = cluster.tasks(splatform.data, "lost")
    assert len(set(nodes)) >= 2, nodes
    victim = next(n for n in ("n3", "n2") if n in nodes)
    victim_addr = cluster.nodes()[victim].addr
    try:
        with load_on(splatform, "lost.localhost", clients=6) as load:
            load.wait_ok(20)
            cluster.stop_node(int(victim[1:]))
            # The swarm notices the node is gone and starts its tasks elsewhere;
            # the route table follows.
            deadline = time.monotonic() + 120
            while True:
                now = cluster.tasks(splatform.data, "lost")
                addrs = [a for a, _ in where(splatform, "lost").values()] \
                    if all(placement.address(splatform.data, i.spec)
                           for i in running(splatform, "lost")) else []
                if len(now) == 3 and victim not in now and addrs and victim_addr not in addrs:
                    break
                assert time.monotonic() < deadline, (now, addrs)
                time.sleep(0.5)
            load.wait_ok(load.ok + 50)
            assert victim_addr not in {a for a, _ in routed(splatform, "lost.localhost")}
    finally:
        cluster.start_node(int(victim[1:]))
    assert load.failures == 0, load.errors[:5]
    assert len(running(splatform, "lost")) == 3
    deadline = time.monotonic() + 60
    while cluster.nodes()[victim].state != "ready":
        assert time.monotonic() < deadline, "the stopped node never came back"
        time.sleep(0.5)
