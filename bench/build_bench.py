"""Build benchmark: a clean build against an incremental one, as a push sees them.

A python app needing two real packages (six, idna) is built several ways:

- cold: an empty cache directory, so pip downloads everything (first push
  to a new server);
- clean: requirements changed (a new cache key) with pip's download cache
  warm: what a push that edits requirements.txt costs;
- incremental: requirements unchanged: the virtualenv is reused, no pip.

The same for a nodejs app with one dependency (is-number), if npm is here.
Each figure is the median wall time of plan() + build_service(), the calls
the pipeline makes. Target: incremental python build under 1 s.

    python bench/build_bench.py [--runs 5]
"""
import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buildpacks import build_service, plan  # noqa: E402
from buildpacks.base import BuildContext  # noqa: E402
from buildpacks.spec import ServiceSpec  # noqa: E402
from dotcloud import logs  # noqa: E402
from runtime.executor import HOST  # noqa: E402

WSGI = "def application(environ, start_response):\n" \
       "    start_response('200 OK', [])\n    return [b'ok']\n"
PACKAGE = '{"name": "b", "version": "1.0.0", "description": "%s", ' \
          '"dependencies": {"is-number": "^7.0.0"}}'


class Bench:
    def __init__(self, root: Path):
        self.root = root
        self.count = 0

    def build(self, kind: str, files: dict, cache: Path) -> tuple[float, bool]:
        self.count += 1
        release = self.root / f"r{self.count}"
        src = release / "src"
        src.mkdir(parents=True)
        for name, text in files.items():
            (src / name).write_text(text)
        ctx = BuildContext(app="bench", service=ServiceSpec(name="www", type=kind), src=src,
                           release_dir=release, cache_dir=cache, env={}, log=lambda line: None,
                           executor=HOST)
        started = time.perf_counter()
        incremental = plan(ctx)
        result = build_service(ctx)
        elapsed = time.perf_counter() - started
        assert result.incremental == incremental
        return elapsed, incremental

    def series(self, kind, make_files, runs):
        cold = []
        for i in range(max(1, runs // 2)):
            cache = self.root / f"cold-cache-{kind}-{i}"
            cold.append(self.build(kind, make_files(f"cold{i}"), cache)[0])
            shutil.rmtree(cache)
        warm = self.root / f"cache-{kind}"
        self.build(kind, make_files("warmup"), warm)
        clean = [self.build(kind, make_files(f"clean{i}"), warm)[0] for i in range(runs)]
        incremental = []
        for _ in range(runs):
            elapsed, was_incremental = self.build(kind, make_files("warmup"), warm)
            assert was_incremental
            incremental.append(elapsed)
        return cold, clean, incremental


def report(name, cold, clean, incremental):
    med = statistics.median
    print(f"{name}:")
    print(f"  cold build (empty cache, downloads)   {med(cold):7.3f} s  (n={len(cold)})")
    print(f"  clean build (requirements changed)    {med(clean):7.3f} s  (n={len(clean)})")
    print(f"  incremental (requirements unchanged)  {med(incremental):7.3f} s  "
          f"(n={len(incremental)}, max {max(incremental):.3f} s)")
    print(f"  clean / incremental                   {med(clean) / med(incremental):7.0f} x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logs.configure(level="warning")
    with tempfile.TemporaryDirectory(prefix="build-bench-") as tmp:
        bench = Bench(Path(tmp))
        python = bench.series(
            "python", lambda tag: {"requirements.txt": f"# {tag}\nsix\nidna\n", "wsgi.py": WSGI},
            args.runs)
        report("python app (six, idna, gunicorn)", *python)
        print("  target: incremental under 1 s:", "met" if statistics.median(python[2]) < 1
              else "NOT met")
        if shutil.which("npm"):
            node = bench.series(
                "nodejs", lambda tag: {"package.json": PACKAGE % tag,
                                       "server.js": "require('is-number')\n"}, args.runs)
            report("nodejs app (is-number)", *node)


if __name__ == "__main__":
    main()
