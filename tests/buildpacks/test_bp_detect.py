"""load_tree: the build file of a pushed tree, or the one service detected from it."""
import os

import pytest

from buildpacks.buildfile import BuildfileError, load_tree
from buildpacks.detect import parse_procfile


@pytest.fixture
def tree(tmp_path):
    def make(files):
        root = tmp_path / "tree"
        root.mkdir(exist_ok=True)
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                path.write_bytes(text)
            else:
                path.write_text(text)
        return root
    return make


def only(buildfile):
    assert list(buildfile.services) == ["www"]
    return buildfile.services["www"]


@pytest.mark.parametrize("files,kind", [
    ({"requirements.txt": "six\n"}, "python"),
    ({"wsgi.py": "application = None\n"}, "python"),
    ({"package.json": "{}"}, "nodejs"),
    ({"index.html": "<h1>hi</h1>"}, "static"),
    # python wins over the others when a tree has several markers
    ({"requirements.txt": "", "package.json": "{}", "index.html": ""}, "python"),
    ({"package.json": "{}", "index.html": ""}, "nodejs"),
])
def test_type_is_detected_from_the_tree(tree, files, kind):
    spec = only(load_tree(tree(files)))
    assert spec.type == kind
    assert spec.approot == "." and spec.processes == {}


def test_procfile_supplies_processes(tree):
    root = tree({"requirements.txt": "six\n",
                 "Procfile": "# processes\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n\n"
                             "worker:python worker.py --queue=a:b\n"})
    spec = only(load_tree(root))
    assert spec.type == "python"
    assert dict(spec.processes) == {"web": "gunicorn app:app --bind 0.0.0.0:$PORT",
                                    "worker": "python worker.py --queue=a:b"}


def test_procfile_alone_makes_a_custom_service(tree):
    spec = only(load_tree(tree({"Procfile": "web: ./server --port $PORT\n"})))
    assert spec.type == "custom"
    assert dict(spec.processes) == {"web": "./server --port $PORT"}


def test_procfile_is_ignored_for_static_sites_with_a_warning(tree):
    bf = load_tree(tree({"index.html": "", "Procfile": "web: x\n"}))
    assert only(bf).processes == {}
    assert bf.warnings == ("Procfile: ignored for a static site (index.html found)",)


@pytest.mark.parametrize("text,message", [
    ("web\n", "Procfile line 1: expected 'name: command'"),
    ("web:\n", "Procfile line 1: expected 'name: command'"),
    ("\nweb: a\nweb: b\n", "Procfile line 3: duplicate process 'web'"),
    ("w@b: a\n", "Procfile line 1: invalid process name 'w@b': use up to 32 letters, digits, "
                 "'_' or '-'"),
])
def test_malformed_procfile_is_refused(text, message):
    with pytest.raises(BuildfileError) as info:
        parse_procfile(text)
    assert str(info.value) == message


def test_nothing_to_detect(tree):
    with pytest.raises(BuildfileError) as info:
        load_tree(tree({"README": "hello"}))
    assert str(info.value) == ("no dotcloud.yml, and nothing to detect: add a dotcloud.yml, "
                               "requirements.txt, package.json or index.html")


def test_dotcloud_yml_wins_over_detection(tree):
    bf = load_tree(tree({"index.html": "", "api/app.js": "",
                         "dotcloud.yml": "api:\n  type: nodejs\n  approot: api\n"}))
    assert list(bf.services) == ["api"]
    assert bf.services["api"].approot == "api"


def test_malformed_dotcloud_yml_names_the_line(tree):
    with pytest.raises(BuildfileError, match=r"^dotcloud.yml line 2: service 'www': unknown type"):
        load_tree(tree({"dotcloud.yml": "www:\n  type: php\n"}))


def test_missing_approot_is_refused_with_the_service_name(tree):
    with pytest.raises(BuildfileError) as info:
        load_tree(tree({"dotcloud.yml": "www:\n  type: python\n  approot: web\n"}))
    assert str(info.value) == "service 'www': approot 'web' is not a directory in the repository"


def test_approot_that_is_a_file_is_refused(tree):
    with pytest.raises(BuildfileError, match="approot 'web' is not a directory"):
        load_tree(tree({"web": "a file", "dotcloud.yml": "www:\n  type: python\n  approot: web\n"}))


def test_approot_symlink_out_of_the_tree_is_refused(tree, tmp_path):
    root = tree({"dotcloud.yml": "www:\n  type: static\n  approot: web\n"})
    os.symlink(tmp_path, root / "web")
    with pytest.raises(BuildfileError, match="approot 'web' is not a directory in the repository"):
        load_tree(root)


def test_approot_symlink_inside_the_tree_is_fine(tree):
    root = tree({"real/index.html": "", "dotcloud.yml": "www:\n  type: static\n  approot: web\n"})
    os.symlink("real", root / "web")
    assert load_tree(root).services["www"].approot == "web"


def test_data_services_need_no_approot(tree):
    bf = load_tree(tree({"dotcloud.yml": "db:\n  type: redis\n  approot: nowhere\n"}))
    assert bf.services["db"].type == "redis"


def test_dotcloud_yml_symlink_out_of_the_tree_is_refused(tree, tmp_path):
    secret = tmp_path / "secret.yml"
    secret.write_text("www: {type: static}\n")
    root = tree({"index.html": ""})
    os.symlink(secret, root / "dotcloud.yml")
    with pytest.raises(BuildfileError) as info:
        load_tree(root)
    assert str(info.value) == "dotcloud.yml must be a regular file inside the repository"


def test_dotcloud_yml_that_is_not_utf8_is_refused(tree):
    with pytest.raises(BuildfileError) as info:
        load_tree(tree({"dotcloud.yml": b"www:\n  type: static\n  # caf\xe9\n"}))
    assert str(info.value) == "dotcloud.yml line 3: not valid UTF-8 text"


def test_huge_procfile_is_refused(tree):
    with pytest.raises(BuildfileError, match="Procfile is larger than 1024 KiB"):
        load_tree(tree({"index.html": "", "Procfile": "#" * (1024 * 1024 + 1)}))


def test_procfile_release_line_is_the_release_command_not_a_process(tree):
    bf = load_tree(tree({"requirements.txt": "", "Procfile": "web: x\nrelease: ./migrate\n"}))
    assert dict(only(bf).processes) == {"web": "x"}
    assert only(bf).release == "./migrate"
    assert bf.warnings == ()


def test_procfile_with_only_a_release_line_keeps_the_type_default(tree):
    spec = only(load_tree(tree({"wsgi.py": "", "Procfile": "release: python migrate.py\n"})))
    assert spec.type == "python" and spec.processes == {}
    assert spec.release == "python migrate.py"


def test_procfile_of_a_static_site_gives_no_release(tree):
    bf = load_tree(tree({"index.html": "", "Procfile": "release: ./x\n"}))
    assert only(bf).release is None
    assert bf.warnings == ("Procfile: ignored for a static site (index.html found)",)


# With a dotcloud.yml: a service without `processes` reads its approot's Procfile.

def test_service_without_processes_takes_its_approot_procfile(tree):
    bf = load_tree(tree({
        "dotcloud.yml": "www:\n  type: python\n  approot: web\nworker:\n"
                        "  type: python-worker\n  approot: jobs\ndb:\n  type: postgresql\n",
        "web/Procfile": "web: gunicorn app:app\nrelease: python manage.py migrate\n",
        "jobs/Procfile": "worker: python worker.py\n",
        "Procfile": "web: not for anyone\n"}))
    www, worker, db = bf.services.values()
    assert dict(www.processes) == {"web": "gunicorn app:app"}
    assert www.release == "python manage.py migrate"
    assert dict(worker.processes) == {"worker": "python worker.py"} and worker.release is None
    assert db.processes == {} and db.release is None
    assert bf.warnings == ()


def test_build_file_release_wins_over_the_procfile(tree):
    bf = load_tree(tree({"dotcloud.yml": "www:\n  type: python\n  release: ./mine\n",
                         "Procfile": "web: x\nrelease: ./theirs\n"}))
    assert only(bf).release == "./mine" and dict(only(bf).processes) == {"web": "x"}


def test_procfile_beside_processes_is_ignored_with_a_warning(tree):
    bf = load_tree(tree({"dotcloud.yml": "www:\n  type: python\n  processes: {web: a}\n",
                         "Procfile": "web: b\nrelease: ./theirs\n"}))
    assert dict(only(bf).processes) == {"web": "a"} and only(bf).release is None
    assert bf.warnings == ("Procfile: ignored for service 'www', which has 'processes' in "
                           "dotcloud.yml",)


def test_malformed_approot_procfile_is_refused_naming_it(tree):
    with pytest.raises(BuildfileError) as info:
        load_tree(tree({"dotcloud.yml": "www:\n  type: python\n  approot: web\n",
                        "web/Procfile": "web: a\nweb\n"}))
    assert str(info.value) == "web/Procfile line 2: expected 'name: command'"


def test_worker_procfile_with_only_a_release_is_refused(tree):
    with pytest.raises(BuildfileError) as info:
        load_tree(tree({"dotcloud.yml": "w:\n  type: python-worker\n",
                        "Procfile": "release: ./migrate\n"}))
    assert str(info.value) == "Procfile: service 'w' (type python-worker) needs a process " \
                              "besides 'release'"


def test_worker_without_processes_or_procfile_is_refused(tree):
    with pytest.raises(BuildfileError, match=r"^dotcloud.yml line 1: service 'w': type "
                                             r"python-worker needs 'processes' .* or a Procfile"):
        load_tree(tree({"dotcloud.yml": "w:\n  type: python-worker\n"}))


def test_approot_procfile_symlink_out_of_the_tree_is_refused(tree, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("web: x\n")
    root = tree({"dotcloud.yml": "www:\n  type: python\n"})
    os.symlink(secret, root / "Procfile")
    with pytest.raises(BuildfileError) as info:
        load_tree(root)
    assert str(info.value) == "Procfile must be a regular file inside the repository"
