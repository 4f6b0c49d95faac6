"""The static file server, as the real process a static service declares."""
import email.utils
import gzip
import os
import socket

import pytest

from buildpacks import build_service

PAGE = "<!doctype html><title>hi</title>" + "<p>static site</p>\n" * 200
FILES = {
    "index.html": PAGE,
    "style.css": "body { color: red }\n" * 100,
    "app.js": "console.log('hi');\n",
    "data.json": '{"a": 1}',
    "logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "docs/index.html": "<h1>docs</h1>",
    "empty/.keep": "",
    "big.bin": os.urandom(300 * 1024),
    "noext": "plain bytes",
    ".env": "SECRET=1",
    ".git/config": "[core]",
    ".well-known/security.txt": "Contact: x",
    "caf\u00e9 menu.txt": "unicode name",
}


@pytest.fixture(scope="module")
def site(make_ctx, run_service, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("top secret")
    ctx, _ = make_ctx(FILES, type="static")
    os.symlink(outside / "secret.txt", ctx.src / "leak.txt")
    os.symlink(outside, ctx.src / "leakdir")
    os.symlink("docs/index.html", ctx.src / "alias.html")
    os.mkfifo(ctx.src / "fifo")
    result = build_service(ctx)
    with run_service(ctx, result) as url:
        yield url


def raw(url, request: bytes, read_until_close=True) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while read_until_close:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


@pytest.mark.parametrize("path,kind", [
    ("/", "text/html; charset=utf-8"),
    ("/index.html", "text/html; charset=utf-8"),
    ("/style.css", "text/css; charset=utf-8"),
    ("/app.js", "text/javascript; charset=utf-8"),
    ("/data.json", "application/json; charset=utf-8"),
    ("/logo.png", "image/png"),
    ("/noext", "application/octet-stream"),
    ("/.well-known/security.txt", "text/plain; charset=utf-8"),
    ("/caf%C3%A9%20menu.txt", "text/plain; charset=utf-8"),
])
def test_content_types(site, http, path, kind):
    status, headers, _ = http(site + path)
    assert status == 200
    assert headers["Content-Type"] == kind


def test_directory_serves_its_index(site, http):
    status, headers, body = http(site + "/")
    assert (status, body.decode()) == (200, PAGE)
    assert http(site + "/docs/")[2] == b"<h1>docs</h1>"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Server"] == "dotcloud-static"


def test_directory_without_slash_redirects(site, http):
    status, headers, _ = http(site + "/docs?x=1")
    assert status == 301
    assert headers["Location"] == "/docs/?x=1"


def test_directory_without_index_is_not_listed(site, http):
    assert http(site + "/empty/")[0] == 404


def test_etag_and_last_modified_give_304(site, http):
    status, headers, body = http(site + "/app.js")
    etag, modified = headers["ETag"], headers["Last-Modified"]
    assert status == 200 and etag.startswith('"') and email.utils.parsedate(modified)
    status, headers304, body = http(site + "/app.js", {"If-None-Match": etag})
    assert (status, body) == (304, b"")
    assert headers304["ETag"] == etag
    assert http(site + "/app.js", {"If-None-Match": 'W/"other", ' + etag})[0] == 304
    assert http(site + "/app.js", {"If-None-Match": '"other"'})[0] == 200
    assert http(site + "/app.js", {"If-Modified-Since": modified})[0] == 304
    assert http(site + "/app.js", {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})[0] == 200
    assert http(site + "/app.js", {"If-Modified-Since": "garbage"})[0] == 200


def test_gzip_for_text_when_accepted(site, http):
    status, headers, body = http(site + "/", {"Accept-Encoding": "br, gzip;q=0.8"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Vary"] == "Accept-Encoding"
    assert int(headers["Content-Length"]) == len(body) < len(PAGE) / 4
    assert gzip.decompress(body).decode() == PAGE
    plain_etag = http(site + "/")[1]["ETag"]
    assert headers["ETag"] != plain_etag
    assert http(site + "/", {"Accept-Encoding": "gzip", "If-None-Match": headers["ETag"]})[0] \
        == 304


@pytest.mark.parametrize("path,accept", [
    ("/", "gzip;q=0"),        # refused explicitly
    ("/", "identity"),
    ("/logo.png", "gzip"),    # images are compressed already
    ("/app.js", "gzip"),      # too small to gain anything
])
def test_no_gzip_when_it_does_not_help(site, http, path, accept):
    status, headers, body = http(site + path, {"Accept-Encoding": accept})
    assert status == 200 and "Content-Encoding" not in headers


def test_head_has_headers_and_no_body(site, http):
    status, headers, body = http(site + "/big.bin", method="HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) == 300 * 1024


def test_large_file_is_sent_whole(site, make_ctx, http):
    status, headers, body = http(site + "/big.bin")
    assert status == 200 and len(body) == 300 * 1024


@pytest.mark.parametrize("path", ["/missing.html", "/docs/missing", "/.env", "/.git/config",
                                  "/leak.txt", "/leakdir/secret.txt", "/fifo"])
def test_missing_hidden_and_escaping_paths_are_404(site, http, path):
    status, _, body = http(site + path)
    assert status == 404
    assert b"secret" not in body


def test_symlink_inside_the_root_is_served(site, http):
    assert http(site + "/alias.html")[2] == b"<h1>docs</h1>"


@pytest.mark.parametrize("target", [b"/../../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd",
                                    b"/docs/..%2f..%2fetc/passwd", b"/%00", b"/caf%ff"])
def test_traversal_and_bad_paths_are_refused(site, target):
    response = raw(site, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status = response.split(b"\r\n", 1)[0]
    assert status == b"HTTP/1.1 400 Bad Request"
    assert b"root:" not in response


def test_keep_alive_serves_several_requests_on_one_connection(site):
    request = b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n"
    response = raw(site, request * 2 + b"GET /data.json HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
    assert response.count(b"HTTP/1.1 200 OK") == 3
    assert response.endswith(b'{"a": 1}')
    assert b"Connection: close" in response


def test_http10_closes_by_default(site):
    response = raw(site, b"GET /app.js HTTP/1.0\r\n\r\n")
    assert response.startswith(b"HTTP/1.0 200 OK") and b"Connection: close" in response


@pytest.mark.parametrize("request_bytes,status", [
    (b"garbage\r\n\r\n", b"400"),
    (b"GET / HTTP/2.0\r\n\r\n", b"505"),
    (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
    (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", b"405"),
    (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"501"),
    (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
])
def test_malformed_requests_get_an_error_not_a_crash(site, http, request_bytes, status):
    response = raw(site, request_bytes)
    assert response.split(b" ")[1] == status
    assert http(site + "/app.js")[0] == 200


def test_max_age_from_config(make_ctx, run_service, http):
    ctx, _ = make_ctx({"index.html": "hi"}, type="static", config={"max_age": 3600})
    with run_service(ctx, build_service(ctx)) as url:
        assert http(url + "/")[1]["Cache-Control"] == "public, max-age=3600"


@pytest.mark.parametrize("spec,first,last", [
    ("bytes=0-99", 0, 99),
    ("bytes=100-", 100, 300 * 1024 - 1),
    ("bytes=-10", 300 * 1024 - 10, 300 * 1024 - 1),
    ("bytes=1000-999999999", 1000, 300 * 1024 - 1),
    ("bytes=5000-200000", 5000, 200000),    # large enough for sendfile
])
def test_byte_ranges(site, http, spec, first, last):
    whole = http(site + "/big.bin")[2]
    status, headers, body = http(site + "/big.bin", {"Range": spec})
    assert status == 206
    assert headers["Content-Range"] == f"bytes {first}-{last}/{300 * 1024}"
    assert body == whole[first:last + 1]


@pytest.mark.parametrize("spec", ["bytes=999999999-", "bytes=-0", "bytes=10-5"])
def test_unsatisfiable_range(site, http, spec):
    status, headers, _ = http(site + "/big.bin", {"Range": spec})
    assert status == 416 and headers["Content-Range"] == f"bytes */{300 * 1024}"


@pytest.mark.parametrize("headers", [{"Range": "bytes=0-1,5-6"}, {"Range": "lines=1-2"},
                                     {"Range": "bytes=a-b"},
                                     {"Range": "bytes=0-1", "If-Range": '"stale"'}])
def test_ignored_ranges_send_everything(site, http, headers):
    status, response_headers, body = http(site + "/big.bin", headers)
    assert status == 200 and len(body) == 300 * 1024
    assert response_headers["Accept-Ranges"] == "bytes"


def test_if_range_with_current_etag_gives_the_range(site, http):
    etag = http(site + "/big.bin", method="HEAD")[1]["ETag"]
    assert http(site + "/big.bin", {"Range": "bytes=0-9", "If-Range": etag})[0] == 206


def test_client_leaving_mid_body_is_not_an_error(site, http):
    host, port = site.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""
    assert http(site + "/app.js")[0] == 200


def test_large_text_is_compressed_off_the_event_loop(make_ctx, run_service, http):
    text = "".join(f"line {i} of a large stylesheet\n" for i in range(40000))  # ~1.2 MB
    ctx, _ = make_ctx({"big.css": text, "index.html": "hi"}, type="static")
    with run_service(ctx, build_service(ctx)) as url:
        for _ in range(2):  # made once, then served from memory
            status, headers, body = http(url + "/big.css", {"Accept-Encoding": "gzip"})
            assert status == 200 and headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(body).decode() == text
