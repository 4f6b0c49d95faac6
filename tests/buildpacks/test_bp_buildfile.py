"""dotcloud.yml parsing: every kind of malformed file, with its exact message and line."""
import json

import pytest

from buildpacks.buildfile import Buildfile, BuildfileError, Healthcheck, ServiceSpec, parse
from buildpacks.registry import BUILDPACKS, buildpack_for
from buildpacks.spec import TYPES
from dotcloud.errors import BuildError

FULL = """\
www:
  type: python
  approot: ./web/
  environment:
    MODE: production
    VERSION: 010
    DEBUG: no
    EMPTY:
  requirements: [six, "idna>=3"]
  prebuild: ./prepare.sh
  postbuild: make assets
  processes:
    web: gunicorn wsgi:application --bind 0.0.0.0:$PORT
    jobs: python jobs.py
  config: {workers: 3, nested: {list: [1, 2.5, x, null, true]}}
  instances: 2
  healthcheck: {path: /health, timeout: 10, interval: 1.5}
  release: python manage.py migrate --noinput
db:
  type: postgresql
"""


def test_full_file_parses_every_key():
    bf = parse(FULL)
    assert list(bf.services) == ["www", "db"]
    www = bf.services["www"]
    assert www.type == "python"
    assert www.approot == "web"
    assert dict(www.environment) == {"MODE": "production", "VERSION": "010", "DEBUG": "no",
                                     "EMPTY": ""}
    assert www.requirements == ("six", "idna>=3")
    assert www.prebuild == "./prepare.sh" and www.postbuild == "make assets"
    assert list(www.processes) == ["web", "jobs"]
    assert www.processes["jobs"] == "python jobs.py"
    assert www.config["nested"]["list"] == (1, 2.5, "x", None, True)
    assert www.instances == 2
    assert www.healthcheck == Healthcheck(path="/health", timeout=10.0, interval=1.5)
    assert www.release == "python manage.py migrate --noinput"
    assert bf.warnings == ()
    assert bf.services["db"] == ServiceSpec(name="db", type="postgresql")


def test_spec_round_trips_through_json():
    for spec in parse(FULL).services.values():
        data = json.loads(json.dumps(spec.to_dict()))
        assert ServiceSpec.from_dict(data) == spec


def test_specs_are_hashable_values():
    one, two = parse(FULL).services["www"], parse(FULL).services["www"]
    assert one == two and hash(one) == hash(two) and len({one, two}) == 1
    assert hash(one) != hash(parse(FULL.replace("instances: 2", "instances: 3")).services["www"])


def test_specs_are_immutable():
    www = parse(FULL).services["www"]
    with pytest.raises(TypeError):
        www.environment["MODE"] = "x"
    with pytest.raises(TypeError):
        www.config["nested"]["list"] = ()
    with pytest.raises(AttributeError):
        www.instances = 3


def test_defaults():
    spec = parse("www: {type: static}").services["www"]
    assert spec.approot == "." and spec.instances == 1 and spec.processes == {}
    assert spec.healthcheck == Healthcheck("/", 30.0, 0.5)


def test_anchors_and_merge_keys_share_settings():
    bf = parse("base: &b\n  type: python\n  instances: 2\nwww:\n  <<: *b\n  instances: 3\n")
    assert bf.services["www"].type == "python"
    assert bf.services["www"].instances == 3


BAD = [
    ("www: {type: python\n", "dotcloud.yml line 2: invalid YAML: expected ',' or '}', but got "
                             "'<stream end>'"),
    ("www:\n\ttype: python\n", "dotcloud.yml line 2: invalid YAML: found character '\\t' that "
                               "cannot start any token"),
    ("a: 1\n---\nb: 2\n", "dotcloud.yml line 2: invalid YAML: expected a single document in "
                          "the stream, but found another document"),
    ("www:\n  type: python\n  x: \x07\n", "dotcloud.yml line 3: invalid YAML: character '\\x07' "
                                          "is not allowed"),
    ("", "dotcloud.yml line 1: the file is empty; it must map service names to services"),
    ("# only a comment\n", "dotcloud.yml line 1: the file is empty; it must map service names "
                           "to services"),
    ("- www\n", "dotcloud.yml line 1: the top level of the file must be a mapping of service "
                "names"),
    ("{}\n", "dotcloud.yml line 1: no services defined; map service names to services, e.g. "
             "'www: {type: python}'"),
    ("www: python\n", "dotcloud.yml line 1: service 'www' must be a mapping, e.g. "
                      "'www: {type: python}'"),
    ("www:\n  approot: web\n", "dotcloud.yml line 1: service 'www': 'type' is required (one of "
                               "python, python-worker, nodejs, static, custom, dockerfile, "
                               "postgresql, redis)"),
    ("www:\n  type: pyhton\n", "dotcloud.yml line 2: service 'www': unknown type 'pyhton' "
                               "(expected one of python, python-worker, nodejs, static, custom, "
                               "dockerfile, postgresql, redis)"),
    ("www:\n  type: [python]\n", "dotcloud.yml line 2: service 'www': 'type' must be a "
                                 "non-empty string"),
    ("\nWeb:\n  type: python\n", "dotcloud.yml line 2: invalid service name 'Web': use a "
                                 "lowercase letter, then up to 31 lowercase letters, digits or '_'"),
    ("my-www:\n  type: python\n", "dotcloud.yml line 1: invalid service name 'my-www': use a "
                                  "lowercase letter, then up to 31 lowercase letters, digits or '_'"),
    ("www:\n  type: python\nwww:\n  type: static\n",
     "dotcloud.yml line 3: the top level of the file: duplicate key 'www'"),
    ("www:\n  type: python\n  type: static\n", "dotcloud.yml line 3: service 'www': duplicate "
                                               "key 'type'"),
    ("www:\n  type: python\n  instances: 0\n", "dotcloud.yml line 3: service 'www': "
                                               "'instances' must be an integer from 1 to 20"),
    ("www:\n  type: python\n  instances: 21\n", "dotcloud.yml line 3: service 'www': "
                                                "'instances' must be an integer from 1 to 20"),
    ("www:\n  type: python\n  instances: two\n", "dotcloud.yml line 3: service 'www': "
                                                 "'instances' must be an integer from 1 to 20"),
    ("www:\n  type: python\n  instances: true\n", "dotcloud.yml line 3: service 'www': "
                                                  "'instances' must be an integer from 1 to 20"),
    ("www:\n  type: python\n  instances: 1.5\n", "dotcloud.yml line 3: service 'www': "
                                                 "'instances' must be an integer from 1 to 20"),
    ("www:\n  type: python\n  processes: [web]\n", "dotcloud.yml line 3: service 'www': "
                                                   "'processes' must be a mapping"),
    ("www:\n  type: python\n  processes:\n    web: ''\n", "dotcloud.yml line 4: service 'www': "
                                                         "'processes': process 'web' must be a "
                                                         "non-empty string"),
    ("www:\n  type: python\n  processes:\n    web: [a]\n", "dotcloud.yml line 4: service 'www': "
                                                          "'processes': process 'web' must be a "
                                                          "non-empty string"),
    ("www:\n  type: python\n  processes:\n    'a b': x\n", "dotcloud.yml line 4: service 'www': "
                                                          "'processes': invalid process name "
                                                          "'a b': use up to 32 letters, digits, "
                                                          "'_' or '-'"),
    ("www:\n  type: custom\n", "dotcloud.yml line 1: service 'www': type custom needs "
                               "'processes' (e.g. 'processes: {worker: python worker.py}') or a "
                               "Procfile in its approot"),
    ("w:\n  type: python-worker\n  processes: {}\n",
     "dotcloud.yml line 3: service 'w': type python-worker needs 'processes' (e.g. "
     "'processes: {worker: python worker.py}') or a Procfile in its approot"),
    ("www:\n  type: python\n  approot: ../other\n", "dotcloud.yml line 3: service 'www': "
                                                    "'approot' must not contain '..'"),
    ("www:\n  type: python\n  approot: web/../../x\n", "dotcloud.yml line 3: service 'www': "
                                                       "'approot' must not contain '..'"),
    ("www:\n  type: python\n  approot: /etc\n", "dotcloud.yml line 3: service 'www': 'approot' "
                                                "must be a relative path inside the repository"),
    ("www:\n  type: python\n  approot: ~root\n", "dotcloud.yml line 3: service 'www': 'approot' "
                                                 "must be a relative path inside the repository"),
    ("www:\n  type: python\n  approot: \"a;b\"\n", "dotcloud.yml line 3: service 'www': "
                                                   "'approot' may only use letters, digits, '_', "
                                                   "'.', '@', '+', '-' and '/'"),
    ("www:\n  type: python\n  approot: 3\n", "dotcloud.yml line 3: service 'www': 'approot' "
                                             "must be a non-empty string"),
    ("www:\n  type: python\n  healthcheck: /health\n", "dotcloud.yml line 3: service 'www': "
                                                       "'healthcheck' must be a mapping"),
    ("www:\n  type: python\n  healthcheck: {path: health}\n",
     "dotcloud.yml line 3: service 'www': 'healthcheck': 'path' must start with '/' and contain "
     "no spaces"),
    ("www:\n  type: python\n  healthcheck:\n    timeout: -1\n",
     "dotcloud.yml line 4: service 'www': 'healthcheck': 'timeout' must be a positive number of "
     "seconds up to 3600"),
    ("www:\n  type: python\n  healthcheck:\n    interval: soon\n",
     "dotcloud.yml line 4: service 'www': 'healthcheck': 'interval' must be a number"),
    ("www:\n  type: python\n  environment: [A]\n", "dotcloud.yml line 3: service 'www': "
                                                   "'environment' must be a mapping"),
    ("www:\n  type: python\n  environment:\n    1ABC: x\n",
     "dotcloud.yml line 4: service 'www': 'environment': invalid variable name '1ABC': use "
     "letters, digits and '_', not starting with a digit"),
    ("www:\n  type: python\n  environment:\n    A-B: x\n",
     "dotcloud.yml line 4: service 'www': 'environment': invalid variable name 'A-B': use "
     "letters, digits and '_', not starting with a digit"),
    ("www:\n  type: python\n  environment:\n    DOTCLOUD_X: x\n",
     "dotcloud.yml line 4: service 'www': 'environment': variable 'DOTCLOUD_X' is reserved "
     "(DOTCLOUD_ prefix)"),
    ("www:\n  type: python\n  environment:\n    A: {b: c}\n",
     "dotcloud.yml line 4: service 'www': 'environment': 'A' must be a single value, not a list "
     "or mapping"),
    ("www:\n  type: python\n  requirements: six\n", "dotcloud.yml line 3: service 'www': "
                                                    "'requirements' must be a list of package "
                                                    "names"),
    ("www:\n  type: python\n  requirements:\n    - six\n    - --index-url=http://evil\n",
     "dotcloud.yml line 5: service 'www': 'requirements': '--index-url=http://evil' must be a "
     "package, not a pip option"),
    ("www:\n  type: python\n  prebuild: [a, b]\n", "dotcloud.yml line 3: service 'www': "
                                                   "'prebuild' must be a non-empty string"),
    ("www:\n  type: python\n  prebuild: \"a\\0b\"\n", "dotcloud.yml line 3: service 'www': "
                                                      "'prebuild' must not contain a NUL character"),
    ("www:\n  type: custom\n  buildscript: 5\n  processes: {web: x}\n",
     "dotcloud.yml line 3: service 'www': 'buildscript' must be a non-empty string"),
    ("www:\n  type: python\n  release: [a, b]\n", "dotcloud.yml line 3: service 'www': "
                                                  "'release' must be a non-empty string"),
    ("www:\n  type: python\n  release: ''\n", "dotcloud.yml line 3: service 'www': "
                                             "'release' must be a non-empty string"),
    ("www:\n  type: python\n  release: 5\n", "dotcloud.yml line 3: service 'www': "
                                            "'release' must be a non-empty string"),
    ("www:\n  type: python\n  release: {a: b}\n", "dotcloud.yml line 3: service 'www': "
                                                 "'release' must be a non-empty string"),
    ("www:\n  type: python\n  config: [a]\n", "dotcloud.yml line 3: service 'www': 'config' "
                                              "must be a mapping"),
    ("www:\n  type: python\n  config: {a: .inf}\n", "dotcloud.yml line 3: service 'www': "
                                                    "'config': numbers must be finite"),
    ("www:\n  type: python\n  config: &c {x: *c}\n", "dotcloud.yml line 3: service 'www': "
                                                     "'config' is nested too deeply (at most 32 "
                                                     "levels)"),
    ("www:\n  type: python\n  config: " + "[" * 3000 + "]" * 3000 + "\n",
     "dotcloud.yml line 3: nested too deeply (at most 40 levels)"),
    ("www:\n  type: python\n  ? [a, b]\n  : c\n", "dotcloud.yml line 3: service 'www': keys "
                                                  "must be plain names"),
    ("www:\n  type: python\n  <<: 5\n", "dotcloud.yml line 2: service 'www': expected a "
                                        "mapping or list of mappings for merging, but found "
                                        "scalar"),
    ("www:\n  type: python\n  requirements: ['six', '']\n",
     "dotcloud.yml line 3: service 'www': 'requirements': empty package name"),
    ("www:\n  type: python\n  requirements: [[six]]\n",
     "dotcloud.yml line 3: service 'www': 'requirements': each item must be a single value, not "
     "a list or mapping"),
    ("www:\n  type: python\n  environment: {A: \"x\\0y\"}\n",
     "dotcloud.yml line 3: service 'www': 'environment': 'A' must not contain a NUL character"),
    ("www:\n  type: python\n  config: {a: " + "x" * (65 * 1024) + "}\n",
     "dotcloud.yml: the file is larger than 64 KiB"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:60] for _, m in BAD])
def test_malformed_files_are_refused_with_line_and_reason(text, message):
    with pytest.raises(BuildfileError) as info:
        parse(text)
    assert str(info.value) == message
    assert isinstance(info.value, BuildError)


def test_alias_bomb_in_config_is_refused():
    text = "www:\n  type: python\n  config:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        prev = chr(ord(level) - 1)
        text += f"    {level}: &{level} [{', '.join(['*' + prev] * 10)}]\n"
    with pytest.raises(BuildfileError, match="'config' is too large"):
        parse(text)


def test_filename_is_named_in_errors():
    with pytest.raises(BuildfileError, match=r"^app/dotcloud.yml line 1: "):
        parse("- x", filename="app/dotcloud.yml")


def test_unknown_keys_are_warned_about_in_order():
    bf = parse("www:\n  type: python\n  instnces: 3\n  colour: blue\n"
               "  healthcheck: {path: /, tmeout: 3}\n")
    assert bf.warnings == (
        "dotcloud.yml line 3: unknown key 'instnces' in service 'www' (ignored); "
        "did you mean 'instances'?",
        "dotcloud.yml line 4: unknown key 'colour' in service 'www' (ignored)",
        "dotcloud.yml line 5: unknown key 'tmeout' in service 'www': 'healthcheck' (ignored); "
        "did you mean 'timeout'?",
    )
    assert bf.services["www"].instances == 1


def test_keys_of_other_types_are_warned_about():
    bf = parse("www:\n  type: static\n  requirements: [six]\n  buildscript: make\n"
               "  processes: {web: x}\n")
    assert bf.warnings == (
        "dotcloud.yml line 3: service 'www': 'requirements' is only used by python services "
        "(ignored)",
        "dotcloud.yml line 4: service 'www': 'buildscript' is only used by custom services "
        "(ignored)",
        "dotcloud.yml line 5: service 'www': 'processes' is not used by static services "
        "(ignored)",
    )


def test_release_of_a_data_service_is_warned_about_and_dropped():
    bf = parse("db:\n  type: postgresql\n  release: ./migrate\n")
    assert bf.warnings == ("dotcloud.yml line 3: service 'db': 'release' is not used by "
                           "postgresql services (ignored)",)
    assert bf.services["db"].release is None


def test_a_procfile_stands_in_for_processes():
    text = "w:\n  type: python-worker\n  approot: jobs\n"
    seen = []
    bf = parse(text, has_procfile=lambda approot: seen.append(approot) or approot == "jobs")
    assert seen == ["jobs"] and bf.services["w"].processes == {}
    with pytest.raises(BuildfileError, match="needs 'processes'"):
        parse(text, has_procfile=lambda approot: False)


def test_every_parsed_type_has_a_buildpack():
    assert set(BUILDPACKS) == set(TYPES)
    with pytest.raises(BuildError, match="unknown service type 'cobol'"):
        buildpack_for("cobol")


def test_buildfile_is_a_value():
    bf = Buildfile(services={"www": ServiceSpec(name="www", type="static")}, warnings=["w"])
    assert bf.warnings == ("w",)
    with pytest.raises(TypeError):
        bf.services["db"] = None
