"""Push-to-live rounds on a platform started for one mode: what the benches
comparing a mode of the daemons with another share (isolation_bench.py:
DOTCLOUD_APP_USERS, limits_bench.py: DOTCLOUD_CGROUPS).

`push_rounds(variables, pushes)` starts a platform with those variables in
its environment, on free ports, in a data directory under /tmp that app
users can pass through, with the real git and OpenSSH clients; pushes a
clean build (new requirements: a virtualenv made, installed and sealed),
then `pushes` pushes of new code with the same requirements, each timed to
the new body served; and returns the times by what they measure, with the
deploy's phases ("start" + "health" is an instance's start). The platform
and its directory are gone afterwards, and the variables as they were.
"""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from platform_helpers import Platform, git_repo, python_app  # noqa: E402
from push_bench import phases  # noqa: E402


def push(p: Platform, repo: Path, app: str, body: str, requirements: str) -> tuple[float, dict]:
    """(seconds from the push to `body` served, the deploy's phases) of one push."""
    git_repo(repo, python_app(body, requirements), body)
    t0 = time.monotonic()
    r = p.push("alice", repo, app)
    if r.code != 0:
        raise SystemExit(f"push failed:\n{r.text}")
    while p.get(f"{app}.localhost")[1] != body:
        time.sleep(0.01)
    return time.monotonic() - t0, phases(r.err)


def push_rounds(variables: dict[str, str], pushes: int) -> dict[str, list[float]]:
    """Times of a clean push and `pushes` pushes of new code (see the module doc)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    root = Path(tempfile.mkdtemp(prefix="dotcloud-bench-", dir="/tmp"))
    root.chmod(0o711)
    p = Platform(data=root / "data", home=root)
    (root / "data").mkdir()
    mode = " ".join(f"{k}={v}" for k, v in variables.items())
    try:
        p.start()
        p.add_user("alice", admin=True)
        repo = root / "app"
        clean = push(p, repo, "bench", "v0", f"# clean build {mode} {time.time()}\n")
        rows = [push(p, repo, "bench", f"v{i}", f"# clean build {mode} {clean[0]}\n")
                for i in range(1, pushes + 1)]
    finally:
        p.stop()
        shutil.rmtree(root, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return {
        "clean push to live": [clean[0]],
        "clean build phase": [clean[1].get("build", 0.0)],
        "push to live": [r[0] for r in rows],
        "build phase": [r[1].get("build", 0.0) for r in rows],
        "instance start (start+health)": [r[1].get("start", 0.0) + r[1].get("health", 0.0)
                                          for r in rows],
    }
