"""Test helpers: a real `dotcloud-server up` on free ports in a temporary
data directory, real `git push` over the real OpenSSH client, real HTTP.
"""
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from dotcloud.filemodes import closed_above  # noqa: E402


def make_key(directory: Path, name: str) -> Path:
    key = directory / f"id_{name}"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                       check=True)
    return key


def open_dir() -> Path:
    """A fresh directory in /var/tmp that every user may write (mode 1777):
    where apps, running as their own users, leave what a test reads (not in
    /tmp: each app has its own there)."""
    path = Path(tempfile.mkdtemp(prefix="dotcloud-open-", dir="/var/tmp"))
    path.chmod(0o1777)
    MADE.append(path)
    return path


OPEN_DATA_PREFIX = "dotcloud-data-"
# What this process made in /tmp (removed when its session ends; another
# session's, on the same machine at the same time, are not its to remove).
MADE: list[Path] = []


def open_data_dir(data: Path) -> Path:
    """A data directory app users can reach, for one under pytest's temporary
    root (0700, and pytest makes it so again at every session's start): a
    directory in /tmp, with `data` left as a link to it. Apps run as their
    own users only under a root platform; they pass through every directory
    above DATA."""
    # DATA's own parent is private to this platform: its up.log sits there.
    top = Path(tempfile.mkdtemp(prefix=OPEN_DATA_PREFIX, dir="/tmp"))
    top.chmod(0o711)
    MADE.append(top)
    real = top / "data"
    real.mkdir(mode=0o711)
    if data.is_dir() and not data.is_symlink():
        for item in data.iterdir():
            shutil.move(str(item), real / item.name)
        data.rmdir()
    data.parent.mkdir(parents=True, exist_ok=True)
    data.symlink_to(real)
    return real


def server_cmd(data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dotcloud.cli", "--data", str(data), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Platform:
    data: Path
    home: Path
    ssh_port: int = 0
    http_port: int = 0
    # 0: HTTPS off (parallel platforms never collide on 8443); a test that
    # wants HTTPS sets a free port before start()
    https_port: int = 0
    proc: subprocess.Popen | None = None
    keys: dict = field(default_factory=dict)
    # Where its ports listen, and what `up` runs under (the swarm tests run
    # it in the manager node's network namespace, with its engine's DOCKER_HOST).
    address: str = "127.0.0.1"
    prefix: tuple = ()

    def start(self, *extra: str) -> None:
        if os.geteuid() == 0 and closed_above(self.data):
            before = self.data.parent / "up.log"
            self.data = open_data_dir(self.data)
            if before.exists():     # a restart: one log for the platform's whole life
                shutil.move(str(before), self.data.parent / "up.log")
        log = open(self.data.parent / "up.log", "ab")
        self.proc = subprocess.Popen(
            [*self.prefix,
             sys.executable, "-u", "-m", "dotcloud.cli", "--data", str(self.data), "up",
             *(("--bind", self.address) if self.address != "127.0.0.1" else ()),
             "--ssh-port", str(self.ssh_port), "--http-port", str(self.http_port),
             "--https-port", str(self.https_port), *extra],
            stdout=subprocess.PIPE, stderr=log, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 30
        https_seen = not self.https_port
        while not (self.ssh_port and self.http_port and https_seen):
            line = self.proc.stdout.readline().decode()
            if not line and self.proc.poll() is not None:
                raise RuntimeError("dotcloud-server up exited; see up.log")
            if m := re.search(r"ssh\s+listening on [\d.]+:(\d+)", line):
                self.ssh_port = int(m.group(1))
            if m := re.search(r"router\s+listening on [\d.]+:(\d+)", line):
                self.http_port = int(m.group(1))
            if m := re.search(r"https\s+listening on [\d.]+:(\d+)", line):
                self.https_port, https_seen = int(m.group(1)), True
            assert time.monotonic() < deadline, "up did not print its ports"
        self.wait_listening()

    def wait_listening(self, timeout: float = 30) -> None:
        import socket
        deadline = time.monotonic() + timeout
        for port in (self.ssh_port, self.http_port, self.https_port):
            while port:
                try:
                    socket.create_connection((self.address, port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"port {port} never listened"
                    time.sleep(0.05)
        while not (self.data / "run" / "runtime.sock").exists():
            assert time.monotonic() < deadline, "runtime never started"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def add_user(self, name: str, admin: bool = False) -> Path:
        key = make_key(self.home, name)
        args = ["keys", "add", name, f"{key}.pub"] + (["--admin"] if admin else [])
        r = server_cmd(self.data, *args)
        assert r.returncode == 0, r.stderr
        self.keys[name] = key
        return key

    def ssh_command(self, user: str) -> str:
        return (f"ssh -i {self.keys[user]} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
                f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes")

    def git_env(self, user: str) -> dict:
        return dict(os.environ, GIT_SSH_COMMAND=self.ssh_command(user), GIT_TERMINAL_PROMPT="0")

    def remote(self, app: str) -> str:
        return f"ssh://dotcloud@{self.address}:{self.ssh_port}/{app}"

    def ssh(self, user: str, *command: str, input: bytes | None = None,
            timeout: float = 120) -> Result:
        argv = self.ssh_command(user).split() + ["-p", str(self.ssh_port),
                                                 f"dotcloud@{self.address}", *command]
        r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
        return Result(r.returncode, r.stdout.decode("utf-8", "replace"),
                      r.stderr.decode("utf-8", "replace"))

    def push(self, user: str, repo: Path, app: str, branch: str = "main",
             timeout: float = 600) -> Result:
        current = subprocess.run(["git", "branch", "--show-current"], cwd=repo,
                                 capture_output=True, text=True).stdout.strip()
        refspec = branch if branch == current else f"HEAD:{branch}"
        r = subprocess.run(["git", "push", self.remote(app), refspec],
                           cwd=repo, env=self.git_env(user), capture_output=True, text=True,
                           timeout=timeout)
        return Result(r.returncode, r.stdout, r.stderr)

    def get(self, host: str, path: str = "/", timeout: float = 10) -> tuple[int, str, dict]:
        conn = http.client.HTTPConnection(self.address, self.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace"), dict(resp.getheaders())
        finally:
            conn.close()


def git_repo(path: Path, files: dict[str, str], message: str = "commit") -> Path:
    """Create (or update) a git repository with these files and commit."""
    path.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    if not (path / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        if name.endswith(".sh") or name.endswith("postinstall"):
            target.chmod(0o755)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=path, env=env,
                   check=True)
    return path


WSGI = '''
def application(environ, start_response):
    body = {body!r}.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def python_app(body: str, requirements: str = "") -> dict[str, str]:
    return {"wsgi.py": WSGI.format(body=body), "requirements.txt": requirements}
