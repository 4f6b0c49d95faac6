"""The deployer's health probe against real sockets: what it tells apart."""
import socket
import threading

from hooks.health import CLOSED, CLOSED_IN_A_ROW, FAILING_FOR, FAILING_IN_A_ROW, Answer, \
    HttpCheck, probe


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


def fail(conn):
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")


def hang_up(conn):
    conn.recv(4096)


def reset(conn):
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def say_nothing(conn):
    conn.recv(4096)
    threading.Event().wait(1.0)


def test_probe_tells_an_answer_a_hang_up_and_silence_apart():
    for behaviour, want in [(answer, Answer(404, "Not Found")), (hang_up, Answer(CLOSED)),
                            (reset, Answer(CLOSED)), (say_nothing, None),
                            (fail, Answer(500, "Internal Server Error"))]:
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


def checks_until_failure(behaviour, limit=200):
    """(checks made, what failure() said, whether any check passed)."""
    listener = serve(behaviour)
    try:
        port = listener.getsockname()[1]
        check = HttpCheck("/health", "h.localhost")
        for n in range(1, limit + 1):
            if check.check(port):
                return n, None, True
            if check.failure():
                return n, check.failure(), False
            threading.Event().wait(0.02)
        return limit, None, False
    finally:
        listener.close()


def test_an_instance_answering_500_on_every_check_fails_with_what_it_answered():
    n, why, ok = checks_until_failure(fail)
    assert not ok and n >= FAILING_IN_A_ROW, (n, why)
    assert why == f"answered 500 Internal Server Error to GET /health {n} times in a row"


def test_an_instance_cutting_every_connection_fails_after_three_checks():
    n, why, ok = checks_until_failure(hang_up)
    assert (n, ok) == (CLOSED_IN_A_ROW, False)
    assert why == "not responsive: it closed the connection without an answer, 3 checks in a row"


def test_a_few_5xx_while_warming_up_are_not_a_failure():
    answers = iter([fail] * (FAILING_IN_A_ROW - 1) + [answer] * 100)
    n, why, ok = checks_until_failure(lambda conn: next(answers)(conn))
    assert (n, why, ok) == (FAILING_IN_A_ROW, None, True)
    assert FAILING_FOR >= 1, "a warming-up app gets seconds, not a few checks"


def test_an_answer_below_500_ends_a_streak_of_5xx():
    check = HttpCheck("/", "h.localhost")
    for behaviour in (fail, fail, answer):
        listener = serve(behaviour)
        try:
            check.check(listener.getsockname()[1])
        finally:
            listener.close()
    assert check.errors == 0 and check.failure(out_of_time=True) is None


def test_out_of_time_the_5xx_it_answered_is_the_reason():
    check = HttpCheck("/", "h.localhost")
    listener = serve(fail)
    try:
        check.check(listener.getsockname()[1])
    finally:
        listener.close()
    assert check.failure() is None
    assert check.failure(out_of_time=True) == \
        "answered 500 Internal Server Error to GET / once"


def test_different_5xx_answers_are_all_named():
    def unavailable(conn):
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    answers = iter([fail, unavailable] * 200)
    n, why, ok = checks_until_failure(lambda conn: next(answers)(conn))
    assert not ok and why == ("answered 500 Internal Server Error, 503 Service Unavailable "
                              f"to GET /health {n} times in a row")
