"""The deployer's health probe against real sockets: what it tells apart."""
import socket
import threading

from hooks.health import CLOSED, probe


def serve(behaviour):
    """A listening socket on loopback whose connections get `behaviour(conn)`."""
    listener = socket.create_server(("127.0.0.1", 0))

    def loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                behaviour(conn)

    threading.Thread(target=loop, daemon=True).start()
    return listener


def answer(conn):
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


def hang_up(conn):
    conn.recv(4096)


def reset(conn):
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def say_nothing(conn):
    conn.recv(4096)
    threading.Event().wait(1.0)


def test_probe_tells_an_answer_a_hang_up_and_silence_apart():
    for behaviour, want in [(answer, 404), (hang_up, CLOSED), (reset, CLOSED),
                            (say_nothing, None)]:
        listener = serve(behaviour)
        try:
            port = listener.getsockname()[1]
            assert probe(port, "/", "h.localhost", timeout=0.3) == want, behaviour.__name__
        finally:
            listener.close()


def test_probe_of_a_port_nobody_listens_on_is_none():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert probe(port, "/", "h.localhost", timeout=0.3) is None
