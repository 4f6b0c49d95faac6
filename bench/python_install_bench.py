"""Python install benchmark: pip against uv on Heroku's python-getting-started requirements.

The dependencies of heroku/python-getting-started (Django 6, gunicorn,
dj-database-url, whitenoise, and psycopg[binary] as its requirements.txt
suggests for a database) are built by the python buildpack itself,
`PythonBuildpack(engine=...)`, once with each engine, three ways:

- cold: empty package caches (pip's and uv's) and a new virtualenv: a new
  server's first push;
- clean: the engine's package cache warm, a new virtualenv (the requirements
  changed, so the cache key did): a push that edits requirements.txt;
- incremental: requirements unchanged: the cached virtualenv is reused.

Each figure is the median wall time of plan() + build(), and the CPU
time (user + system) of the processes the build ran, which a machine shared
with other work disturbs less; the ratio pip/uv is printed beside each.
Target: a clean build with uv in at most half of pip's wall time. The
engines take turns, run by run. The interpreter is chosen as for an app, by `.python-version`
(default 3.12: Django 6 needs it), among those installed here.

    python bench/python_install_bench.py [--runs 3] [--python-version 3.12]
"""
import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buildpacks.base import BuildContext  # noqa: E402
from buildpacks.interpreters import python_for  # noqa: E402
from buildpacks.python import PythonBuildpack  # noqa: E402
from buildpacks.spec import ServiceSpec  # noqa: E402
from dotcloud import logs  # noqa: E402
from runtime.executor import HOST  # noqa: E402

# python-getting-started's requirements.txt, with its commented psycopg line on.
REQUIREMENTS = """\
django>=6.0,<6.1
gunicorn>=26,<27
dj-database-url>=3,<4
whitenoise>=6,<7
psycopg[binary]
"""
WSGI = "def application(environ, start_response):\n" \
       "    start_response('200 OK', [])\n    return [b'ok']\n"
ENGINES = ("pip", "uv")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Bench:
    def __init__(self, root: Path, version: str):
        self.root = root
        self.version = version
        self.count = 0

    def build(self, engine: str, tag: str, cache: Path) -> tuple[tuple[float, float], bool]:
        self.count += 1
        release = self.root / f"r{self.count}"
        src = release / "src"
        src.mkdir(parents=True)
        (src / "requirements.txt").write_text(f"# {tag}\n{REQUIREMENTS}")
        (src / ".python-version").write_text(self.version + "\n")
        (src / "wsgi.py").write_text(WSGI)
        ctx = BuildContext(app="bench", service=ServiceSpec(name="www", type="python"), src=src,
                           release_dir=release, cache_dir=cache, env={}, log=lambda line: None,
                           executor=HOST)
        pack = PythonBuildpack(engine=engine)
        started = time.perf_counter()
        cpu = children_cpu()
        pack.check(ctx)
        incremental = pack.plan(ctx)
        result = pack.build(ctx)
        elapsed = time.perf_counter() - started, children_cpu() - cpu
        assert result.incremental == incremental
        shutil.rmtree(release)
        return elapsed, incremental

    def series(self, runs: int) -> dict[str, tuple[list, list, list]]:
        """Each engine's cold, clean and incremental figures, the engines taking
        turns so that a load change on the machine touches both alike."""
        out = {engine: ([], [], []) for engine in ENGINES}
        for i in range(runs):
            for engine in ENGINES:
                cache = self.root / f"cold-{engine}-{i}"
                out[engine][0].append(self.build(engine, f"cold {engine} {i}", cache)[0])
                shutil.rmtree(cache)
        for engine in ENGINES:
            self.build(engine, "warmup", self.root / f"warm-{engine}")
        for i in range(runs):
            for engine in ENGINES:
                warm = self.root / f"warm-{engine}"
                out[engine][1].append(self.build(engine, f"clean {engine} {i}", warm)[0])
                figures, was_incremental = self.build(engine, "warmup", warm)
                assert was_incremental
                out[engine][2].append(figures)
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python-version", default="3.12")
    args = parser.parse_args()
    logs.configure(level="warning")
    with tempfile.TemporaryDirectory(prefix="python-install-bench-") as tmp:
        bench = Bench(Path(tmp), args.python_version)
        probe = Path(tmp) / "probe"
        probe.mkdir()
        (probe / ".python-version").write_text(args.python_version + "\n")
        interpreter = python_for(BuildContext(
            app="bench", service=ServiceSpec(name="www", type="python"), src=probe,
            release_dir=Path(tmp), cache_dir=Path(tmp), env={}, log=print, executor=HOST))
        print(f"python-getting-started requirements, {interpreter.summary}, "
              f"median of {args.runs} runs")
        figures = bench.series(args.runs)

    def med(engine, i, which):
        return statistics.median(run[which] for run in figures[engine][i])
    print(f"  {'':33} {'wall: pip':>10} {'uv':>8} {'pip/uv':>7}  {'CPU: pip':>9} {'uv':>7} "
          f"{'pip/uv':>7}")
    for i, name in enumerate(("cold (empty caches)", "clean (warm cache, new venv)",
                              "incremental (unchanged: reused)")):
        cells = []
        for which in (0, 1):
            pip, uv = med("pip", i, which), med("uv", i, which)
            cells.append(f"{pip:8.3f}s {uv:7.3f}s {pip / uv if uv else 0:6.1f}x")
        print(f"  {name:33} {cells[0]}  {cells[1]}")
    pip_clean, uv_clean = med("pip", 1, 0), med("uv", 1, 0)
    print("  target: clean build with uv at most half of pip's:",
          "met" if uv_clean <= pip_clean / 2 else "NOT met")


if __name__ == "__main__":
    main()
