"""Error pages the router answers with itself: small, clear, one per status.

Pure functions of the status; nothing here knows about connections.
"""
from __future__ import annotations

TITLES = {
    308: "Permanent Redirect",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}

EXPLANATIONS = {
    400: "The request was malformed or ambiguous and was not forwarded.",
    404: "No application is served at this address.",
    405: "This method is not supported by the router.",
    408: "The request took too long to arrive.",
    414: "The request line is too long.",
    431: "The request headers are too large.",
    502: "The application could not be reached or sent an invalid response.",
    503: "The application has no running instance right now.",
    504: "The application did not answer in time.",
    505: "Only HTTP/1.0 and HTTP/1.1 are served here.",
}


def render(status: int, keep_alive: bool = False, detail: str = "") -> bytes:
    title = TITLES.get(status, "Error")
    text = detail or EXPLANATIONS.get(status, "")
    body = (f"<!doctype html>\n<html><head><title>{status} {title}</title></head>"
            f"<body><h1>{status} {title}</h1><p>{_escape(text)}</p>"
            "<hr><p>dotcloud router</p></body></html>\n").encode()
    head = (f"HTTP/1.1 {status} {title}\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            + ("" if keep_alive else "Connection: close\r\n")
            + "\r\n").encode()
    return head + body


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def redirect(location: str, keep_alive: bool = False) -> bytes:
    """308 to the same request over HTTPS (method and body kept by the client)."""
    body = (f'<!doctype html>\n<html><head><title>308 Permanent Redirect</title></head>'
            f'<body><p>This page is at <a href="{_escape(location)}">{_escape(location)}</a>'
            '</p></body></html>\n').encode()
    return (f"HTTP/1.1 308 Permanent Redirect\r\nLocation: {location}\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("" if keep_alive else "Connection: close\r\n")
            + "\r\n").encode() + body
