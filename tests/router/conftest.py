import pytest

from routerkit import RouterProcess, Upstream, routes


@pytest.fixture
def upstreams():
    """A factory of real upstream servers, all stopped at the end."""
    made = []

    def make(name: str) -> Upstream:
        up = Upstream(name)
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop()


@pytest.fixture
def start_router(tmp_path):
    """A factory starting `python -m router` subprocesses; each is stopped at the end."""
    made = []

    def start(table: dict | None = None, env: dict | None = None, data=None,
              args: tuple = ()) -> RouterProcess:
        router = RouterProcess(data or tmp_path / f"data{len(made)}", env=env, table=table,
                               args=args)
        made.append(router)
        return router

    yield start
    for router in made:
        router.stop()


def _hello_table(up) -> dict:
    return routes(1, {
        "hello.localhost": ("hello", "www", [up.backend()]),
        "api.hello.localhost": ("hello", "api", [up.backend()]),
        "www.example.com": ("hello", "www", [up.backend()]),
        "empty.localhost": ("empty", "www", []),
    })


@pytest.fixture
def own_hello(upstreams, start_router):
    """A router of its own serving app 'hello' (www, api service, a custom domain)."""
    up = upstreams("a")
    router = start_router(_hello_table(up))
    router.up = up
    return router


@pytest.fixture
def hello(own_hello):
    """The 'hello' router a test may change (modules may override this with fresh_hello)."""
    return own_hello


@pytest.fixture(scope="module")
def shared_hello(tmp_path_factory):
    """Like hello, shared by a module's tests that do not change the router."""
    up = Upstream("a")
    router = RouterProcess(tmp_path_factory.mktemp("shared"), table=_hello_table(up))
    router.up = up
    yield router
    router.stop()
    up.stop()


@pytest.fixture
def fresh_hello(shared_hello):
    """shared_hello with the upstream's request record cleared."""
    shared_hello.up.hits = 0
    shared_hello.up.seen.clear()
    shared_hello.up.connections.clear()
    return shared_hello
