"""What the docker tests look at on the engine (a module of its own: test modules
never import from a conftest, which pytest replaces per directory)."""
from runtime import docker_engine


def data_label(data) -> str:
    return f"{docker_engine.LABEL_DATA}={docker_engine.data_id(data)}"


def app_containers(engine, data, app: str) -> list:
    """The running containers of an app's instances on one platform."""
    return engine.containers.list(filters={"label": [data_label(data), f"dotcloud.app={app}"]})


def built_on(engine, image: str, base: str) -> bool:
    """Whether `image` is `base` plus layers of its own."""
    mine = engine.images.get(image).attrs["RootFS"]["Layers"]
    theirs = engine.images.get(base).attrs["RootFS"]["Layers"]
    return len(mine) > len(theirs) and mine[:len(theirs)] == theirs
