"""`limits:` in dotcloud.yml and `default_limits` in config.yml: parsed, or refused in one line."""
import pytest

from buildpacks import schema
from buildpacks.spec import BuildfileError, ServiceSpec
from dotcloud import settings
from dotcloud.errors import UsageError
from dotcloud.resources import Limits

MiB = 1024 * 1024


def parse(limits_yaml):
    return schema.parse(f"www:\n  type: python\n  limits: {limits_yaml}\n")


def test_limits_of_a_service():
    buildfile = parse("{memory: 512M, cpus: 1.5, processes: 256}")
    spec = buildfile.services["www"]
    assert spec.limits == Limits(512 * MiB, 1.5, 256)
    assert ServiceSpec.from_dict(spec.to_dict()).limits == spec.limits
    assert not buildfile.warnings


def test_a_service_without_limits_keeps_its_old_definition():
    spec = schema.parse("www:\n  type: python\n").services["www"]
    assert spec.limits == Limits() and "limits" not in spec.to_dict()


@pytest.mark.parametrize("text, message", [
    ("{memory: lots}", "dotcloud.yml line 3: service 'www': 'limits': 'memory' must be a size "
                       "such as 512M or 2G, not 'lots'"),
    ("{memory: 1K}", "dotcloud.yml line 3: service 'www': 'limits': 'memory' must be from 4M "
                     "to 1T, not 1K"),
    ("{cpus: -1}", "dotcloud.yml line 3: service 'www': 'limits': 'cpus' must be a number of "
                   "CPUs from 0.01 to 1024, e.g. 1.5"),
    ("{processes: many}", "dotcloud.yml line 3: service 'www': 'limits': 'processes' must be "
                          "an integer from 1 to 4194304"),
    ("{processes: [1, 2]}", "dotcloud.yml line 3: service 'www': 'limits': 'processes' must "
                            "be a single value"),
    ("512M", "dotcloud.yml line 3: service 'www': 'limits' must be a mapping"),
    ("{build: {memory: lots}}", "dotcloud.yml line 3: service 'www': 'limits': 'build': "
                                "'memory' must be a size such as 512M or 2G, not 'lots'"),
    ("{build: {processes: 0}}", "dotcloud.yml line 3: service 'www': 'limits': 'build': "
                                "'processes' must be an integer from 1 to 4194304"),
    ("{build: {cpus: [1]}}", "dotcloud.yml line 3: service 'www': 'limits': 'build': "
                             "'cpus' must be a single value"),
    ("{build: 1G}", "dotcloud.yml line 3: service 'www': 'limits': 'build' must be a mapping"),
])
def test_bad_limits_are_refused_naming_the_line(text, message):
    with pytest.raises(BuildfileError) as e:
        parse(text)
    assert str(e.value) == message


def test_an_unknown_limit_is_warned_about():
    buildfile = parse("{memroy: 1G}")
    assert buildfile.warnings == ("dotcloud.yml line 3: unknown key 'memroy' in service "
                                  "'www': 'limits' (ignored); did you mean 'memory'?",)
    assert buildfile.services["www"].limits == Limits()


def test_default_limits_in_config_yml(tmp_path):
    assert settings.load(tmp_path).default_limits == Limits(1024 * MiB, None, 1024)
    (tmp_path / "config.yml").write_text("default_limits: {memory: 256M, cpus: 0.5}\n")
    assert settings.load(tmp_path).default_limits == Limits(256 * MiB, 0.5, None)


@pytest.mark.parametrize("text, message", [
    ("default_limits: {memory: 1K}", "default_limits: 'memory' must be from 4M to 1T, not 1K"),
    ("default_limits: {cpu: 1}", "default_limits: unknown limit 'cpu' (known: memory, cpus, "
                                 "processes)"),
    ("default_limits: 2G", "default_limits: limits must be a mapping such as {memory: 512M, "
                           "cpus: 1.5, processes: 256}"),
    ("default_build_limits: {memory: 1K}",
     "default_build_limits: 'memory' must be from 4M to 1T, not 1K"),
    ("default_build_limits: {build: {memory: 1G}}",
     "default_build_limits: unknown limit 'build' (known: memory, cpus, processes)"),
    ("default_build_limits: 2G", "default_build_limits: limits must be a mapping such as "
                                 "{memory: 512M, cpus: 1.5, processes: 256}"),
])
def test_bad_default_limits_are_refused(tmp_path, text, message):
    (tmp_path / "config.yml").write_text(text + "\n")
    with pytest.raises(UsageError) as e:
        settings.load(tmp_path)
    assert str(e.value) == f"{tmp_path / 'config.yml'}: {message}"


def test_a_build_has_limits_of_its_own():
    buildfile = parse("{memory: 256M, build: {memory: 1G, cpus: 2}}")
    spec = buildfile.services["www"]
    assert spec.limits == Limits(256 * MiB)
    assert spec.build_limits == Limits(1024 * MiB, 2.0)
    assert ServiceSpec.from_dict(spec.to_dict()).build_limits == spec.build_limits
    assert not buildfile.warnings
    # An empty `build:` leaves the defaults; without one the spec's dict is unchanged.
    assert parse("{memory: 256M, build: }").services["www"].build_limits == Limits()
    assert "build_limits" not in parse("{memory: 256M}").services["www"].to_dict()


def test_an_unknown_build_limit_is_warned_about():
    buildfile = parse("{build: {memroy: 1G, build: {memory: 1G}}}")
    assert buildfile.warnings == (
        "dotcloud.yml line 3: unknown key 'memroy' in service 'www': 'limits': 'build' "
        "(ignored); did you mean 'memory'?",
        "dotcloud.yml line 3: unknown key 'build' in service 'www': 'limits': 'build' "
        "(ignored)")


def test_default_build_limits_in_config_yml(tmp_path):
    assert settings.load(tmp_path).default_build_limits == Limits(2048 * MiB, None, 1024)
    (tmp_path / "config.yml").write_text("default_build_limits: {memory: 3G, cpus: 1}\n")
    assert settings.load(tmp_path).default_build_limits == Limits(3072 * MiB, 1.0, None)
