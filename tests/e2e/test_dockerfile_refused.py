"""The process runtime refuses a dockerfile service in one line and changes nothing."""
from platform_helpers import git_repo

DOCKERFILE = 'FROM python:3.12-slim\nCMD ["python3", "-m", "http.server"]\n'


def test_process_runtime_refuses_a_dockerfile_service(platform, tmp_path):
    repo = git_repo(tmp_path / "df", {"Dockerfile": DOCKERFILE,
                                      "dotcloud.yml": "www:\n  type: dockerfile\n"})
    r = platform.push("alice", repo, "dfproc")
    assert r.code != 0
    [ref] = [line for line in r.err.splitlines() if "[remote rejected]" in line]
    assert ref.endswith("main -> main (build failed: service 'www': type dockerfile needs the "
                        "docker or swarm runtime)"), ref
    assert not (platform.data / "releases" / "dfproc" / "v1").exists()
    assert platform.get("dfproc.localhost")[0] in (404, 503)
