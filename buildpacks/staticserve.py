"""A small, efficient static file server: the process of a `static` service.

HTTP/1.1 with keep-alive on asyncio; index.html for directories; content
types; ETag and Last-Modified with 304 answers; Cache-Control; byte ranges;
gzip for text when the client accepts it (compressed once, kept in a
bounded memory cache); large files sent with sendfile. It must never serve anything
outside its root (symlinks included), list a directory, or show dotfiles
(except .well-known). Standard library only: it runs as a script
(`python -I staticserve.py --root DIR --port N`), not as part of the
platform.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import email.utils
import gzip
import mimetypes
import os
import signal
import stat
import sys
import urllib.parse

HEADER_LIMIT = 16 * 1024
BODY_LIMIT = 1024 * 1024
IDLE_TIMEOUT = 15.0
SMALL_FILE = 64 * 1024
GZIP_MIN, GZIP_MAX = 512, 8 * 1024 * 1024
GZIP_CACHE_BYTES = 32 * 1024 * 1024
STOP_GRACE = 10.0
TYPES = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css",
    ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
    ".map": "application/json", ".txt": "text/plain", ".xml": "application/xml",
    ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".webp": "image/webp", ".ico": "image/x-icon", ".avif": "image/avif",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".wasm": "application/wasm",
    ".pdf": "application/pdf", ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg",
    ".webmanifest": "application/manifest+json", ".csv": "text/csv", ".md": "text/markdown",
}
COMPRESSIBLE = ("text/", "application/json", "application/xml", "application/javascript",
                "image/svg+xml", "application/wasm", "application/manifest+json")
UNSATISFIABLE = "unsatisfiable"
REASONS = {200: "OK", 206: "Partial Content", 301: "Moved Permanently", 304: "Not Modified", 400: "Bad Request",
           404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large",
           416: "Range Not Satisfiable",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 505: "HTTP Version Not Supported"}


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def content_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    kind = TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "application/javascript"):
        kind += "; charset=utf-8"
    return kind


def accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            try:
                return not (q.startswith("q=") and float(q[2:] or 0) == 0)
            except ValueError:
                return False
    return False


def byte_range(headers: dict, etag: str, size: int):
    """None (send it all), (first, last) byte positions, or UNSATISFIABLE.

    One range only: a multi-range request gets the whole file, which RFC 9110
    allows. A stale If-Range also gets the whole file.
    """
    spec = headers.get("range", "")
    if not spec.startswith("bytes=") or "," in spec:
        return None
    if "if-range" in headers and headers["if-range"] != etag:
        return None
    first, sep, last = spec[6:].strip().partition("-")
    if not sep or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if not last or int(last) == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return UNSATISFIABLE
    return start, end


def etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    bare = etag.removeprefix("W/")
    return "*" in tags or any(t.removeprefix("W/") == bare for t in tags)


class Site:
    """The served directory: maps URL paths to files, keeps compressed copies."""

    def __init__(self, root: str, max_age: int) -> None:
        self.root = os.path.realpath(root)
        self.cache_control = f"public, max-age={max_age}" if max_age else "no-cache"
        self.gzipped: collections.OrderedDict = collections.OrderedDict()
        self.gzipped_bytes = 0

    def inside(self, path: str) -> str | None:
        real = os.path.realpath(path)
        return real if real == self.root or real.startswith(self.root + os.sep) else None

    def locate(self, url_path: str) -> tuple[str, str | None]:
        """('file', real path) | ('redirect', location) | ('missing', None)."""
        parts = [p for p in url_path.split("/") if p]
        for part in parts:
            if part == "..":
                raise BadRequest(400, "bad path")
            if part.startswith(".") and part != ".well-known":
                return "missing", None
        real = self.inside(os.path.join(self.root, *parts))
        if real is None:
            return "missing", None
        try:
            st = os.stat(real)
        except OSError:
            return "missing", None
        if stat.S_ISDIR(st.st_mode):
            if not url_path.endswith("/"):
                return "redirect", urllib.parse.quote(url_path) + "/"
            index = self.inside(os.path.join(real, "index.html"))
            if index is None or not os.path.isfile(index):
                return "missing", None
            return "file", index
        return ("file", real) if stat.S_ISREG(st.st_mode) else ("missing", None)

    async def compressed(self, path: str, st: os.stat_result) -> bytes | None:
        """The gzipped file, made once per version; None when gzip does not help."""
        key = (path, st.st_mtime_ns, st.st_size)
        if key in self.gzipped:
            self.gzipped.move_to_end(key)
            return self.gzipped[key]
        if st.st_size > SMALL_FILE:
            # Compressing megabytes takes a while: not on the event loop.
            body = await asyncio.to_thread(gzip_file, path)
        else:
            body = gzip_file(path)
        if key in self.gzipped:  # another request made it meanwhile
            return self.gzipped[key]
        self.gzipped[key] = body
        self.gzipped_bytes += len(body or b"")
        while self.gzipped_bytes > GZIP_CACHE_BYTES and self.gzipped:
            _, old = self.gzipped.popitem(last=False)
            self.gzipped_bytes -= len(old or b"")
        return body


def gzip_file(path: str) -> bytes | None:
    with open(path, "rb") as f:
        raw = f.read()
    body = gzip.compress(raw, compresslevel=6, mtime=0)
    return body if len(body) < len(raw) * 0.9 else None


class Request:
    def __init__(self, method: str, target: str, version: str, headers: dict) -> None:
        self.method, self.target, self.version, self.headers = method, target, version, headers

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


def parse_head(head: bytes) -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:
        raise BadRequest(400, "bad request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505 if version.startswith("HTTP/") else 400, "bad version")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise BadRequest(400, "bad header")
        name = name.lower()
        if name in headers and name in ("content-length", "host"):
            raise BadRequest(400, f"duplicate {name}")
        headers[name] = value.strip()
    return Request(method, target, version, headers)


class Server:
    """One listening socket; one coroutine per connection."""

    def __init__(self, site: Site, access_log: bool) -> None:
        self.site = site
        self.access_log = access_log
        self.active = 0
        self.idle = asyncio.Event()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: no extra task per request.
                    async with asyncio.timeout(IDLE_TIMEOUT):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    await self.error(writer, 431, "headers too large", "HTTP/1.1")
                    return
                self.active += 1
                self.idle.clear()
                try:
                    if not await self.request(reader, writer, head):
                        return
                finally:
                    self.active -= 1
                    if not self.active:
                        self.idle.set()
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # shutting down: not an error worth a traceback
        finally:
            writer.close()

    async def request(self, reader, writer, head: bytes) -> bool:
        """Answer one request; False when the connection must close."""
        try:
            req = parse_head(head[:-4])
            await self.discard_body(reader, req)
            keep = req.keep_alive
            status = await self.respond(writer, req, keep)
        except BadRequest as e:
            await self.error(writer, e.status, str(e), "HTTP/1.1")
            return False
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            return False  # the client went away
        except Exception as e:  # a bug must cost one request, not the server
            print(f"staticserve: error: {e!r}", file=sys.stderr, flush=True)
            await self.error(writer, 500, "internal error", "HTTP/1.1")
            return False
        if self.access_log:
            print(f"{req.method} {req.target} {status}", flush=True)
        return keep

    async def discard_body(self, reader, req: Request) -> None:
        if "transfer-encoding" in req.headers:
            raise BadRequest(501, "request bodies with Transfer-Encoding are not supported")
        length = req.headers.get("content-length", "0")
        if not length.isdigit():
            raise BadRequest(400, "bad Content-Length")
        if int(length) > BODY_LIMIT:
            raise BadRequest(413, "request body too large")
        if int(length):
            await reader.readexactly(int(length))

    async def respond(self, writer, req: Request, keep: bool) -> int:
        if req.method not in ("GET", "HEAD"):
            await self.send(writer, req, 405, {"Allow": "GET, HEAD"}, b"method not allowed\n", keep)
            return 405
        raw_path = req.target.split("?", 1)[0].split("#", 1)[0]
        if raw_path.startswith(("http://", "https://")):
            raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
        try:
            path = urllib.parse.unquote(raw_path, errors="strict")
        except UnicodeDecodeError:
            raise BadRequest(400, "bad path") from None
        if not path.startswith("/") or "\x00" in path:
            raise BadRequest(400, "bad path")
        kind, where = self.site.locate(path)
        if kind == "redirect":
            query = "?" + req.target.split("?", 1)[1] if "?" in req.target else ""
            await self.send(writer, req, 301, {"Location": where + query}, b"", keep)
            return 301
        if kind == "missing":
            await self.send(writer, req, 404, {}, b"not found\n", keep)
            return 404
        return await self.send_file(writer, req, where, keep)

    async def send_file(self, writer, req: Request, path: str, keep: bool) -> int:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            kind = content_type(path)
            etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
            headers = {"Content-Type": kind, "Last-Modified": email.utils.formatdate(
                st.st_mtime, usegmt=True), "Cache-Control": self.site.cache_control}
            body: bytes | None = None
            compressible = kind.startswith(COMPRESSIBLE) and GZIP_MIN <= st.st_size <= GZIP_MAX
            if compressible:
                headers["Vary"] = "Accept-Encoding"
                if accepts_gzip(req.headers.get("accept-encoding", "")):
                    body = await self.site.compressed(path, st)
                    if body is not None:
                        headers["Content-Encoding"] = "gzip"
                        etag = etag[:-1] + '-gz"'
            headers["ETag"] = etag
            if self.not_modified(req, etag, st):
                await self.send(writer, req, 304, headers, b"", keep, length=False)
                return 304
            if body is not None:
                await self.send(writer, req, 200, headers, body, keep)
                return 200
            headers["Accept-Ranges"] = "bytes"
            status, start, count = 200, 0, st.st_size
            span = byte_range(req.headers, etag, st.st_size)
            if span == UNSATISFIABLE:
                headers["Content-Range"] = f"bytes */{st.st_size}"
                await self.send(writer, req, 416, headers, b"", keep)
                return 416
            if span is not None:
                status, (start, end) = 206, span
                count = end - start + 1
                headers["Content-Range"] = f"bytes {start}-{end}/{st.st_size}"
            if count <= SMALL_FILE:
                f.seek(start)
                await self.send(writer, req, status, headers, f.read(count), keep)
                return status
            await self.send(writer, req, status, headers, b"", keep, length=False,
                            extra_length=count)
            if req.method == "GET":
                await asyncio.get_running_loop().sendfile(writer.transport, f, start, count)
            return status

    @staticmethod
    def not_modified(req: Request, etag: str, st: os.stat_result) -> bool:
        if "if-none-match" in req.headers:
            return etag_matches(req.headers["if-none-match"], etag)
        since = req.headers.get("if-modified-since")
        if since:
            try:
                return int(st.st_mtime) <= email.utils.parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return False
        return False

    async def send(self, writer, req: Request, status: int, headers: dict, body: bytes,
                   keep: bool, length: bool = True, extra_length: int | None = None) -> None:
        lines = [f"{req.version} {status} {REASONS.get(status, 'Unknown')}",
                 f"Date: {email.utils.formatdate(usegmt=True)}", "Server: dotcloud-static"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if extra_length is not None:
            lines.append(f"Content-Length: {extra_length}")
        elif length:
            lines.append(f"Content-Length: {len(body)}")
        if req.version == "HTTP/1.0" and keep:
            lines.append("Connection: keep-alive")
        elif not keep:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(data + body if req.method != "HEAD" else data)
        await writer.drain()

    async def error(self, writer, status: int, message: str, version: str) -> None:
        req = Request("GET", "/", version, {})
        await self.send(writer, req, status, {"Content-Type": "text/plain; charset=utf-8"},
                        f"{message}\n".encode(), keep=False)

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self.connection, host, port, limit=HEADER_LIMIT,
                                            reuse_address=True)
        bound = server.sockets[0].getsockname()
        print(f"staticserve: serving {self.site.root} on http://{bound[0]}:{bound[1]}/",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()
        if self.active:
            try:
                await asyncio.wait_for(self.idle.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="staticserve", description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--max-age", type=int, default=0)
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        parser.error(f"--root {args.root}: not a directory")
    asyncio.run(Server(Site(args.root, args.max_age), args.access_log).serve(args.bind, args.port))


if __name__ == "__main__":
    main()
