"""DataDir: the data directory's layout, and that nobody else spells it."""
import re
from pathlib import Path

import pytest

from dotcloud.datadir import DataDir
from dotcloud.settings import Settings, load

ROOT = Path(__file__).resolve().parent.parent


def test_layout(tmp_path):
    d = DataDir(tmp_path)
    assert d.config == tmp_path / "config.yml"
    assert d.db == tmp_path / "dotcloud.db"
    assert d.host_key == tmp_path / "ssh_host_ed25519_key"
    assert d.repo("www") == tmp_path / "repos" / "www.git"
    assert d.release("www", 7) == tmp_path / "releases" / "www" / "v7"
    assert d.releases("www") == d.release("www", 7).parent
    assert d.home("www", 3, "api", 2) == tmp_path / "homes" / "www" / "g3-api.2"
    assert d.release_home("www", 3, "api") == tmp_path / "homes" / "www" / "g3-api.release"
    assert d.log("www", "api.2") == tmp_path / "logs" / "www" / "api.2.log"
    assert d.pipeline_log == tmp_path / "logs" / "pipeline.log"
    assert d.service_data("www", "db") == tmp_path / "services" / "www" / "db"
    assert d.cache == tmp_path / "cache"
    assert d.tls == tmp_path / "tls"
    assert d.challenges == tmp_path / "acme" / "challenges"


def test_a_homes_generation_is_read_back_from_its_name(tmp_path):
    d = DataDir(tmp_path)
    assert d.home_generation(d.home("www", 12, "api", 3)) == 12
    assert d.home_generation(d.release_home("www", 4, "api")) == 4
    assert d.home_generation(tmp_path / "lost+found") is None


def test_an_instance_log_name_is_relative_to_the_logs_directory(tmp_path):
    d = DataDir(tmp_path)
    name = d.log_name("www", "api.2")
    assert not Path(name).is_absolute()
    assert d.log_file(name) == d.log("www", "api.2")


def test_instance_files(tmp_path):
    inst = DataDir(tmp_path).instance(42)
    assert inst.path == tmp_path / "instances" / "42"
    assert (inst.spec.name, inst.pid.name, inst.status.name) == \
        ("shim.json", "shim.pid", "status.json")
    assert {inst.spec.parent, inst.pid.parent, inst.status.parent} == {inst.path}


def test_run_directory(tmp_path):
    d = DataDir(tmp_path)
    assert d.socket("runtime") == tmp_path / "run" / "runtime.sock"
    assert d.daemon_info("up") == tmp_path / "run" / "up.json"
    assert d.daemon_lock("acme") == tmp_path / "run" / "acme.lock"
    assert d.routes == tmp_path / "run" / "routes.json"
    assert d.routes_lock.parent == d.run
    assert d.app_lock("www") == tmp_path / "run" / "locks" / "www.lock"
    assert d.placement("g3-www.1") == tmp_path / "run" / "placement" / "g3-www.1.json"


def test_tool_caches_are_per_uid_inside_the_cache(tmp_path):
    d = DataDir(tmp_path)
    assert d.tool_cache(60001) == tmp_path / "cache" / "users" / "60001"
    assert d.tool_cache(60001).parent == d.tool_caches


def test_app_paths_are_the_apps_own_and_nothing_shared(tmp_path):
    d = DataDir(tmp_path)
    paths = d.app_paths("www")
    assert d.repo("www") in paths and d.releases("www") in paths and d.homes("www") in paths
    assert d.app_logs("www") in paths and d.service_data("www", "db").parent in paths
    assert all("www" in p.relative_to(tmp_path).parts[-1] for p in paths)
    assert not {d.cache, d.logs, d.run, d.root} & set(paths)
    assert DataDir(tmp_path).app_paths("ww") != paths


def test_all_releases_lists_release_directories_only(tmp_path):
    d = DataDir(tmp_path)
    for app, build in (("a", 1), ("a", 2), ("b", 1)):
        d.release(app, build).mkdir(parents=True)
    (d.releases("a") / "v3-partial.tmp").write_text("")   # a file, not a release
    assert sorted(d.all_releases()) == [d.release("a", 1), d.release("a", 2),
                                        d.release("b", 1)]


def test_empty_data_directory_has_no_releases(tmp_path):
    assert DataDir(tmp_path / "none").all_releases() == []


def test_ensure_creates_what_the_daemons_expect_and_is_idempotent(tmp_path):
    d = DataDir(tmp_path / "data")
    d.ensure()
    d.ensure()
    for path in (d.run, d.repos, d.releases_root, d.cache, d.logs, d.instances):
        assert path.is_dir()


def test_frozen_and_takes_strings(tmp_path):
    d = DataDir(str(tmp_path))
    assert d.root == tmp_path and d == DataDir(tmp_path)
    with pytest.raises(AttributeError):
        d.root = Path("/")


def test_settings_expose_the_data_directory(tmp_path):
    settings = load(tmp_path / "data")
    assert settings.paths == DataDir(tmp_path / "data")
    assert settings.paths.run.is_dir() and settings.paths.instances.is_dir()
    assert Settings(data=tmp_path).paths.db == tmp_path / "dotcloud.db"


def test_config_errors_name_the_config_file(tmp_path):
    DataDir(tmp_path).config.write_text("no_such_setting: 1\n")
    with pytest.raises(Exception, match=re.escape(str(tmp_path / "config.yml"))):
        load(tmp_path)


# What only dotcloud/datadir.py may join onto a path.
LAYOUT_NAMES = {"run", "repos", "releases", "homes", "instances", "logs", "cache", "tls", "acme",
                "services", "locks", "users", "placement", "challenges", "dotcloud.db",
                "config.yml", "ssh_host_ed25519_key", "routes.json", "routes.lock", "shim.json",
                "shim.pid", "pipeline.log"}
PRODUCT = ("dotcloud", "hooks", "runtime", "gitserver", "router", "buildpacks")


def layout_joins(source: str, name: str = "<test>") -> list[int]:
    """Lines of `source` that join a layout name onto a path (`x / "releases"`,
    `x / "router.sock"`)."""
    import ast
    lines = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) \
                and isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
            value = node.right.value
            if value in LAYOUT_NAMES or value.endswith(".sock"):
                lines.append(node.lineno)
    return sorted(lines)


def test_the_check_finds_a_spelled_path():
    assert layout_joins('p = settings.data / "releases" / app\nq = run / "runtime.sock"\n'
                        'r = paths.release(app, 1) / "src"\n') == [1, 2]


def test_no_module_but_datadir_spells_the_layout():
    found = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "dotcloud" / "datadir.py":
                continue
            found += [f"{path.relative_to(ROOT)}:{line}"
                      for line in layout_joins(path.read_text(), str(path))]
    assert found == []
