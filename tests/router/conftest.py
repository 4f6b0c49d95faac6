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

    def start(table: dict | None = None, env: dict | None = None, data=None) -> RouterProcess:
        router = RouterProcess(data or tmp_path / f"data{len(made)}", env=env, table=table)
        made.append(router)
        return router

    yield start
    for router in made:
        router.stop()


@pytest.fixture
def hello(upstreams, start_router):
    """A router serving app 'hello' (www, api service, a custom domain) from one upstream."""
    up = upstreams("a")
    router = start_router(routes(1, {
        "hello.localhost": ("hello", "www", [up.backend()]),
        "api.hello.localhost": ("hello", "api", [up.backend()]),
        "www.example.com": ("hello", "www", [up.backend()]),
        "empty.localhost": ("empty", "www", []),
    }))
    router.up = up
    return router
