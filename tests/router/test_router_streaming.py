"""Large bodies stream through the router in both directions with backpressure.

The router's peak resident memory (VmHWM) must stay far below the body size:
a body that sat in memory, in either direction, would show up there.
"""
import hashlib
import json
import socket
import time

MB = 1 << 20
SIZE = 256 * MB
MEMORY_LIMIT_KB = 120 * 1024     # the router idles at ~35 MB; a buffered body adds 256 MB


def test_large_download_streams_with_bounded_memory(hello):
    conn = hello.connect(timeout=60)
    conn.request("GET", f"/big?size={SIZE}", headers={"Host": "hello.localhost"})
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.getheader("Content-Length")) == SIZE
    # a client that stops reading: the router must stop reading the upstream too
    time.sleep(1.0)
    assert hello.rss_peak_kb() < MEMORY_LIMIT_KB
    total = 0
    while chunk := resp.read(MB):
        total += len(chunk)
    assert total == SIZE
    assert hello.rss_peak_kb() < MEMORY_LIMIT_KB
    conn.close()


def test_large_upload_streams_with_bounded_memory(hello):
    block = bytes(range(256)) * 4096     # 1 MiB
    digest = hashlib.sha256()
    count = SIZE // len(block)

    def body():
        for _ in range(count):
            digest.update(block)
            yield block

    conn = hello.connect(timeout=60)
    # the upstream waits a second before reading: the router must stop reading the client
    conn.request("POST", "/slow-reader?delay=1", body=body(),
                 headers={"Host": "hello.localhost", "Content-Length": str(SIZE)})
    resp = conn.getresponse()
    seen = json.loads(resp.read())
    assert resp.status == 200
    assert seen["body_len"] == SIZE and seen["body_sha256"] == digest.hexdigest()
    assert hello.rss_peak_kb() < MEMORY_LIMIT_KB
    conn.close()


def test_chunked_upload_of_large_body(hello):
    block = b"z" * MB
    conn = hello.connect(timeout=60)
    conn.request("POST", "/upload", body=(block for _ in range(64)),
                 headers={"Host": "hello.localhost", "Transfer-Encoding": "chunked"},
                 encode_chunked=True)
    resp = conn.getresponse()
    assert json.loads(resp.read())["body_len"] == 64 * MB
    assert hello.rss_peak_kb() < MEMORY_LIMIT_KB


def test_client_vanishing_mid_download_frees_the_upstream(hello):
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as s:
        s.sendall(b"GET /big?size=%d HTTP/1.1\r\nHost: hello.localhost\r\n\r\n" % SIZE)
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if hello.control({"op": "status"})["in_flight"] == {}:
            break
        time.sleep(0.05)
    assert hello.control({"op": "status"})["in_flight"] == {}
    assert hello.request("hello.localhost")[0] == 200
    assert hello.log_events("request", match="client closed the connection")
