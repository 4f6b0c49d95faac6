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


def test_procfile_release_process_is_warned_about(tree):
    bf = load_tree(tree({"requirements.txt": "", "Procfile": "web: x\nrelease: ./migrate\n"}))
    assert only(bf).processes["release"] == "./migrate"
    assert bf.warnings == ("Procfile: 'release' runs as a long-running process here; for a "
                           "command to run once per deploy, use an executable postinstall file",)
