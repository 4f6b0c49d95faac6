"""The release phase through real pushes: a Procfile `release:` command run
once per deploy (push, var set) before the new instances launch, its failure
keeping the old release, postinstall reaching a new postgresql service by
DATABASE_URL (and never running inside it), and a Django app with
collectstatic and a release-phase `migrate` in one push. Then the parts on
their own: the release command's runner, the Heroku aliases."""
import io
import json
from dataclasses import replace

import pytest
from platform_helpers import git_repo, open_dir

from dotcloud.desired import ServiceManifest
from dotcloud.errors import DeployError
from dotcloud.settings import load
from hooks import datastores, release_phase
from hooks.deploy import instance_env
from hooks.progress import Progress

slow = pytest.mark.slow

RELEASE_PY = '''
import os, sys, six
line = "%s %s six=%s dyno=%s args=%s home=%s" % (
    os.environ["DOTCLOUD_PROJECT"], os.environ.get("GREETING", "-"), six.__version__,
    os.environ.get("DYNO"), ",".join(sys.argv[1:]), os.environ["HOME"])
print("release says:", line)
with open(os.environ["LEDGER"], "a") as f:
    f.write(line + "\\n")
sys.exit(int(os.environ.get("RELEASE_EXIT", "0")))
'''

WSGI = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [{body!r}.encode()]
'''


def release_app(ledger, body: str, exit_code: int = 0, args: str = "") -> dict:
    return {"dotcloud.yml": f"www:\n  type: python\n  instances: 2\n  environment:\n"
                            f"    LEDGER: {ledger}\n    RELEASE_EXIT: '{exit_code}'\n",
            "Procfile": f"release: python release.py{args}\n",
            "requirements.txt": "six==1.16.0\n",      # older than the newest: the venv's own
            "release.py": RELEASE_PY, "wsgi.py": WSGI.format(body=body)}


def body(platform, app: str, path: str = "/") -> str:
    status, text, _ = platform.get(f"{app}.localhost", path)
    assert status == 200, text
    return text


@slow
def test_release_command_runs_once_per_deploy_before_launch(platform, tmp_path):
    ledger = open_dir() / "ledger"     # the app writes it, as its own user
    repo = git_repo(tmp_path / "relonce", release_app(ledger, "one"))
    r = platform.push("alice", repo, "relonce")
    assert r.code == 0, r.err
    lines = ledger.read_text().splitlines()
    assert len(lines) == 1                       # two instances, one release command
    assert lines[0].startswith("relonce - six=1.16.0 dyno=release.1 args= home=")
    home = lines[0].split("home=")[1]
    assert "[www] Running release command: python release.py" in r.err
    assert f"[www] release says: {lines[0]}" in r.err
    # Before any new instance launched; its fresh home is gone afterwards.
    assert r.err.index("release says") < r.err.index("[www.0] Launching...")
    assert not (platform.data / "homes" / "relonce" / home.rsplit("/", 1)[-1]).exists()
    assert body(platform, "relonce") == "one"

    # A new release of the same build (var set) runs it again, with the variable.
    r = platform.ssh("alice", "var", "set", "relonce", "GREETING=hi")
    assert r.code == 0, r.err
    lines = ledger.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("relonce hi six=1.16.0 dyno=release.1 args= home=")
    assert "Running release command: python release.py" in r.text
    assert lines[1].split("home=")[1] != home

    # A rollback runs the release command of the build it goes back to.
    git_repo(repo, release_app(ledger, "three", args=" third"))
    r = platform.push("alice", repo, "relonce")
    assert r.code == 0, r.err
    assert ledger.read_text().splitlines()[2].startswith("relonce hi six=1.16.0 dyno=release.1 args=third ")
    r = platform.ssh("alice", "rollback", "relonce")
    assert r.code == 0, r.err
    lines = ledger.read_text().splitlines()
    assert len(lines) == 4 and lines[3].startswith("relonce hi six=1.16.0 dyno=release.1 args= home=")
    assert body(platform, "relonce") == "one"


@slow
def test_failing_release_command_fails_the_push_and_the_old_release_keeps_serving(platform,
                                                                                   tmp_path):
    ledger = open_dir() / "ledger"
    repo = git_repo(tmp_path / "relfail", release_app(ledger, "old"))
    assert platform.push("alice", repo, "relfail").code == 0
    git_repo(repo, release_app(ledger, "new", exit_code=3))
    r = platform.push("alice", repo, "relfail")
    assert r.code != 0
    [ref] = [line for line in r.err.splitlines() if "[remote rejected]" in line]
    assert "deploy failed: www: release command failed (exit 3)" in ref, r.err
    assert "[www] release says: relfail" in r.err
    assert "[www.0] Launching..." not in r.err      # no new instance ever ran
    assert len(ledger.read_text().splitlines()) == 2
    assert body(platform, "relfail") == "old"

    # So does a `var set` whose release command fails; the variable is not kept.
    r = platform.ssh("alice", "var", "set", "relfail", "RELEASE_EXIT=5")
    assert r.code != 0 and "www: release command failed (exit 5)" in r.text, r.text
    assert body(platform, "relfail") == "old"
    assert "RELEASE_EXIT" not in platform.ssh("alice", "var", "list", "relfail").out


# Shared by the tests below, so the second one reuses the first's virtualenv.
DJANGO_REQUIREMENTS = "Django==5.1.4\npsycopg[binary]==3.2.3\nwhitenoise==6.7.0\n"

POSTINSTALL = '''#!/bin/sh
set -e
python - <<'EOF'
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS marks (service text)")
    conn.execute("INSERT INTO marks VALUES (%s)", (os.environ["DOTCLOUD_SERVICE_NAME"],))
EOF
echo "postinstall reached the database from $DOTCLOUD_SERVICE_NAME"
'''

MARKS_WSGI = '''
import json, os, psycopg

def application(environ, start_response):
    # As Heroku apps do (dj-database-url's ssl_require): TLS or nothing.
    with psycopg.connect(os.environ["DATABASE_URL"], sslmode="require") as conn:
        marks = [r[0] for r in conn.execute("SELECT service FROM marks")]
        tls = conn.pgconn.ssl_in_use
    body = json.dumps({"marks": marks, "tls": tls, "DATABASE_URL": os.environ["DATABASE_URL"],
                       "pg": os.environ["DOTCLOUD_DB_POSTGRESQL_URL"],
                       "REDIS_URL": os.environ.get("REDIS_URL")})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
'''


@slow
def test_postinstall_reaches_a_new_postgresql_service_in_the_first_push(platform, tmp_path):
    repo = git_repo(tmp_path / "pinst", {
        "dotcloud.yml": "www:\n  type: python\ndb:\n  type: postgresql\n",
        "requirements.txt": DJANGO_REQUIREMENTS, "postinstall": POSTINSTALL,
        "wsgi.py": MARKS_WSGI})
    r = platform.push("alice", repo, "pinst")
    assert r.code == 0, r.err
    assert "[www.0] postinstall reached the database from www" in r.err
    assert "[db.0] Running postinstall" not in r.err     # approot '.' holds it, db too
    assert r.err.index("[db.0] Accepting connections") < r.err.index("[www.0] Running postinstall")
    seen = json.loads(body(platform, "pinst"))
    assert seen["marks"] == ["www"] and seen["tls"] is True
    assert seen["DATABASE_URL"] == seen["pg"] and seen["REDIS_URL"] is None


DJANGO_FILES = {
    "manage.py": '''#!/usr/bin/env python
import os, sys
if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
''',
    "wsgi.py": '''import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
''',
    "mysite/__init__.py": "",
    # DATABASE_URL read by hand, as dj-database-url would; absent at build time.
    "mysite/settings.py": '''import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "only-for-this-test"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.staticfiles", "polls"]
MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware"]
ROOT_URLCONF = "mysite.urls"
_db = urlsplit(os.environ.get("DATABASE_URL", "postgresql://nobody@localhost/none"))
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": _db.path[1:],
                         "USER": unquote(_db.username or ""),
                         "PASSWORD": unquote(_db.password or ""),
                         "HOST": _db.hostname, "PORT": _db.port or 5432}}
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
''',
    "mysite/urls.py": '''from django.urls import path
from polls import views
urlpatterns = [path("", views.index), path("visit", views.visit)]
''',
    "polls/__init__.py": "",
    "polls/models.py": '''from django.db import models

class Visit(models.Model):
    when = models.DateTimeField(auto_now_add=True)
''',
    "polls/migrations/__init__.py": "",
    "polls/migrations/0001_initial.py": '''from django.db import migrations, models

class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [migrations.CreateModel(name="Visit", fields=[
        ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False,
                                verbose_name="ID")),
        ("when", models.DateTimeField(auto_now_add=True))])]
''',
    "polls/views.py": '''from django.http import HttpResponse
from django.templatetags.static import static
from .models import Visit

def index(request):
    return HttpResponse(f"visits={Visit.objects.count()} css={static('polls/style.css')}")

def visit(request):
    Visit.objects.create()
    return HttpResponse(f"visits={Visit.objects.count()}")
''',
    "polls/static/polls/style.css": "body { color: teal; }\n",
    "Procfile": "release: python manage.py migrate --noinput\n",
    "dotcloud.yml": "www:\n  type: python\ndb:\n  type: postgresql\n",
    "requirements.txt": DJANGO_REQUIREMENTS,
}


@slow
def test_django_with_collectstatic_and_a_release_phase_migrate_in_one_push(platform, tmp_path):
    repo = git_repo(tmp_path / "djrelease", DJANGO_FILES)
    r = platform.push("alice", repo, "djrelease")
    assert r.code == 0, r.err
    assert "[www] $ python manage.py collectstatic --noinput" in r.err     # at build time
    assert "[www] Running release command: python manage.py migrate --noinput" in r.err
    assert "Applying polls.0001_initial... OK" in r.err
    page = body(platform, "djrelease")
    assert page.startswith("visits=0 css=/static/polls/style.")   # the manifest's hashed name
    css = page.split("css=")[1]
    assert css != "/static/polls/style.css"
    assert body(platform, "djrelease", css) == "body { color: teal; }\n"
    assert body(platform, "djrelease", "/visit") == "visits=1"

    # The next deploy migrates again: nothing to apply, the data kept.
    r = platform.ssh("alice", "var", "set", "djrelease", "MODE=second")
    assert r.code == 0, r.err
    assert "No migrations to apply." in r.text
    assert body(platform, "djrelease").startswith("visits=1 ")


# The parts on their own.

def run_release(tmp_path, command, timeout=60):
    tmp_path = open_dir()   # the command runs as the app's own user, and writes in src
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    src.chmod(0o1777)
    out = io.StringIO()
    info = ServiceManifest("www", {"type": "python", "release": command}, str(src), True, {})
    home = release_phase.home_for(load(tmp_path / "data"), "app", 7, "www")
    env = {"PATH": "/usr/bin:/bin", "GREETING": "hi"}
    try:
        release_phase.run(load(tmp_path / "data"), "app", "www", info, tmp_path, home, env,
                          Progress(out), timeout=timeout)
    finally:
        assert not home.exists()
    return out.getvalue(), src, home


def test_release_command_runs_in_approot_with_env_and_a_home_of_its_own(tmp_path):
    out, src, home = run_release(tmp_path, 'echo "$GREETING from $(pwd)"; echo "$HOME" > seen; '
                                           'cat "$HOME/environment.json" > env')
    assert out.splitlines() == ["[www] Running release command: echo \"$GREETING from $(pwd)\"; "
                                "echo \"$HOME\" > seen; cat \"$HOME/environment.json\" > env",
                                f"[www] hi from {src}", "[www] Release command finished"]
    assert (src / "seen").read_text().strip() == str(home)
    assert json.loads((src / "env").read_text())["GREETING"] == "hi"
    assert home.name == "g7-www.release"


def test_failing_release_command_names_its_exit(tmp_path):
    with pytest.raises(DeployError) as info:
        run_release(tmp_path, "echo broken; exit 4")
    assert str(info.value) == "www: release command failed (exit 4)"


def test_release_command_past_its_deadline_fails(tmp_path):
    with pytest.raises(DeployError) as info:
        run_release(tmp_path, "sleep 30", timeout=0.5)
    assert str(info.value) == "www: release command timed out after 0.5s"


def test_no_release_command_runs_nothing(tmp_path):
    out = io.StringIO()
    # A build from before release commands: its manifest has no "release".
    info = ServiceManifest.from_dict("www", {"spec": {"type": "python"}, "src": str(tmp_path)})
    assert release_phase.command_of(info) is None
    release_phase.run(load(tmp_path), "app", "www", info, tmp_path, tmp_path / "h", {},
                      Progress(out))
    assert out.getvalue() == "" and not (tmp_path / "h").exists()


def services(*kinds):
    return {f"s{i}": ServiceManifest(f"s{i}", {"type": kind}, "/", False, {})
            for i, kind in enumerate(kinds)}


def urls(svc):
    return {f"DOTCLOUD_{name.upper()}_{info.type.upper()}_URL": f"url-{name}"
            for name, info in svc.items()}


@pytest.mark.parametrize("kinds,expected", [
    (("python", "postgresql", "redis"), {"DATABASE_URL": "url-s1", "REDIS_URL": "url-s2"}),
    (("python", "postgresql", "postgresql", "redis"), {"REDIS_URL": "url-s3"}),
    (("python", "redis", "redis"), {}),
    (("python",), {}),
])
def test_heroku_aliases_only_for_the_one_service_of_a_kind(kinds, expected):
    svc = services(*kinds)
    assert datastores.heroku_aliases(svc, urls(svc)) == expected


def test_aliases_never_override_the_apps_own_variables(tmp_path):
    settings = load(tmp_path)
    data_env = {"DOTCLOUD_DB_POSTGRESQL_URL": "pg", "DATABASE_URL": "pg", "REDIS_URL": "redis"}
    info = ServiceManifest("www", {"type": "python",
                                   "environment": {"DATABASE_URL": "from-build-file"}},
                           "/", True, {})
    env = instance_env(settings, "app", "www", 0, None, info, {}, tmp_path, data_env)
    assert env["DATABASE_URL"] == "from-build-file" and env["REDIS_URL"] == "redis"
    env = instance_env(settings, "app", "www", 0, None, info, {"REDIS_URL": "mine"}, tmp_path,
                       data_env)
    assert env["REDIS_URL"] == "mine" and env["DOTCLOUD_DB_POSTGRESQL_URL"] == "pg"


def test_release_command_is_no_part_of_a_data_servers_definition():
    old = ServiceManifest("cache", {"type": "redis"}, "/", False, {"redis": ["redis-server"]})
    assert datastores.same_definition(old, replace(old, spec={"type": "redis", "release": None}))
    assert not datastores.same_definition(old, replace(old, spec={"type": "redis", "x": 1}))


def test_probe_says_no_when_nothing_listens():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not datastores.answers("postgresql", port)
        assert not datastores.answers("redis", port)
