"""What the docker tests look at on the engine (a module of its own: test modules
never import from a conftest, which pytest replaces per directory)."""
from runtime import docker_engine


def data_label(data) -> str:
    return f"{docker_engine.LABEL_DATA}={docker_engine.data_id(data)}"


def app_containers(engine, data, app: str) -> list:
    """The running containers of an app's instances on one platform."""
    return engine.containers.list(filters={"label": [data_label(data), f"dotcloud.app={app}"]})
