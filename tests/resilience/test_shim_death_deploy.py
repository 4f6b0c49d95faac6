"""A shim killed while its new instance boots does not fail the deploy: the
runtime starts another, the app boots under it, and the push goes live
(it failed with `www.0 crashed at boot (no exit status)`: the deploy took the
shim's death for the app's). The dead shim's start and the new one's are in
its stderr file."""
import subprocess
import threading
from pathlib import Path

from platform_helpers import git_repo
from resilience_helpers import instances, kill9, shims_for, wait_until

# Boots only once the test says so: the shim is killed while the app waits.
SERVER = '''
import os, time
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"booted"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

while not os.path.exists(os.path.join(os.environ["HOME"], "go")):
    time.sleep(0.05)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def test_a_shim_killed_at_boot_is_replaced_and_the_deploy_goes_live(own_platform, tmp_path):
    p = own_platform
    repo = git_repo(tmp_path / "shimdie", {
        "server.py": SERVER,
        "dotcloud.yml": "www:\n  type: custom\n  processes:\n    web: python3 server.py\n"})
    pushed = {}
    push = threading.Thread(target=lambda: pushed.setdefault("r", p.push("alice", repo,
                                                                         "shimdie")))
    push.start()
    try:
        [inst] = wait_until(lambda: [i for i in instances(p.data, "shimdie")
                                     if shims_for(p.data, i.id)], timeout=300,
                            what="the new instance's shim")
        [shim] = shims_for(p.data, inst.id)
        kill9(shim)
        # The app went with it (PDEATHSIG): the next one may boot at once.
        (Path(inst.spec.home) / "go").write_text("")
    finally:
        push.join(600)
    r = pushed["r"]
    assert r.code == 0, r.text
    assert p.get("shimdie.localhost")[:2] == (200, "booted")
    err = (p.data / "instances" / str(inst.id) / "shim.err").read_text()
    assert err.count("--- shim started ") == 2, err
    log = (p.data / "logs" / "shimdie" / "www.0.log").read_text()
    assert f"the instance's shim (pid {shim}) died" in log, log
