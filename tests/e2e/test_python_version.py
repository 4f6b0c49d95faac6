"""Issue 12: `.python-version` picks the interpreter among those installed on the host,
and a version that is not installed is refused on the push's ref line, changing nothing.
"""
import os
import re
import subprocess
from pathlib import Path

import pytest
from platform_helpers import git_repo

pytestmark = pytest.mark.slow

WSGI = '''
import sys

def application(environ, start_response):
    body = sys.version.split()[0].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def installed_versions(minor: str) -> list[str]:
    """The N.N.N of `minor` installed here, oldest first, as the test finds them itself:
    pyenv's directories, and python3.N in /usr/bin and on PATH (run)."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    names = os.listdir(root) if root.is_dir() else []
    found = {n for n in names if re.fullmatch(rf"{re.escape(minor)}\.\d+", n)
             and (root / n / "bin" / "python3").exists()}
    for directory in os.environ.get("PATH", "").split(":") + ["/usr/bin"]:
        binary = Path(directory) / f"python{minor}"
        if directory.endswith("/shims") or not os.access(binary, os.X_OK):
            continue
        out = subprocess.run([binary, "-c", "import sys; print(*sys.version_info[:3], sep='.')"],
                             capture_output=True, text=True)
        found.add(out.stdout.strip())
    return sorted(found, key=lambda n: tuple(map(int, n.split("."))))


def remote_ref(platform, app):
    r = subprocess.run(["git", "ls-remote", platform.remote(app), "refs/heads/main"],
                       env=platform.git_env("alice"), capture_output=True, text=True, timeout=60)
    return r.stdout.split()[0]


def test_python_version_file_chooses_the_interpreter(platform, tmp_path):
    installed = installed_versions("3.12")
    if not installed:
        pytest.skip("needs an installed Python 3.12 (e.g. pyenv install 3.12.1)")
    repo = git_repo(tmp_path / "pv", {".python-version": "# asked as Heroku's apps do\n3.12\n",
                                      "requirements.txt": "", "wsgi.py": WSGI})
    r = platform.push("alice", repo, "pyver")
    assert r.code == 0, r.text
    assert f"remote: [www] Using Python {installed[-1]} (from .python-version)" in r.err, r.err
    assert platform.get("pyver.localhost")[:2] == (200, installed[-1])
    good = remote_ref(platform, "pyver")

    git_repo(repo, {".python-version": "3.14\n"}, "ask for a Python not installed")
    r = platform.push("alice", repo, "pyver")
    assert r.code != 0
    [ref] = [line for line in r.err.splitlines() if "[remote rejected]" in line]
    assert "main -> main (build failed: .python-version asks for Python 3.14, which is not " \
           "installed here (installed: " in ref, ref
    assert f"{installed[-1]}" in ref.split("(installed: ")[1], ref
    assert remote_ref(platform, "pyver") == good
    assert platform.get("pyver.localhost")[:2] == (200, installed[-1])
