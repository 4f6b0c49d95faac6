"""HTTPS end to end: `up --https-port`, the platform's wildcard (tls_cert/tls_key in
config.yml), `domain cert` over SSH with each refusal, `domain add --allow-http
/ --hsts`, the redirect, and the router killed with -9 serving HTTPS again
from the stored certificates as soon as the supervisor restarts it.

Certificates come from a CA the test makes; the names are under example.com
and apps.test, which the ACME daemon never asks a public CA for.
"""
import json
import os
import shlex
import signal
import socket
import ssl
import time

import pytest
from platform_helpers import Platform, git_repo
from tlskit import CA, serial_of

from dotcloud import fsutil

DOMAIN = "apps.test"
APP = '''
import json

def application(environ, start_response):
    body = json.dumps({"proto": environ.get("HTTP_X_FORWARDED_PROTO"),
                       "path": environ.get("PATH_INFO")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ca():
    return CA()


@pytest.fixture(scope="module")
def https(tmp_path_factory, ca):
    root = tmp_path_factory.mktemp("https")
    (root / "data").mkdir()
    chain, key, _ = ca.issue(f"*.{DOMAIN}", DOMAIN)
    (root / "wild.pem").write_bytes(chain)
    (root / "wild.key").write_bytes(key)
    (root / "data" / "config.yml").write_text(
        f"tls_cert: {root / 'wild.pem'}\ntls_key: {root / 'wild.key'}\n")
    p = Platform(data=root / "data", home=root, https_port=free_port())
    p.start("--domain", DOMAIN)
    try:
        p.add_user("alice", admin=True)
        repo = git_repo(root / "shop", {"wsgi.py": APP, "requirements.txt": ""})
        r = p.push("alice", repo, "shop")
        assert r.code == 0, r.text
        yield p
    finally:
        p.stop()


def tls_get(p, ca, name, path="/", verify=True):
    """(status, headers, body, peer certificate serial) over HTTPS with SNI `name`."""
    ctx = ca.client_context()
    ctx.check_hostname = verify
    with socket.create_connection(("127.0.0.1", p.https_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                         .encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            serial = serial_of(sock.getpeercert(binary_form=True))
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":")
                                                            for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body, serial


def ssh(p, *words, input=b""):
    return p.ssh("alice", shlex.join(words), input=input)


def test_up_prints_https_and_the_wildcard_serves_apps(https, ca):
    status, _, body, wildcard = tls_get(https, ca, f"shop.{DOMAIN}")
    assert status == 200 and json.loads(body)["proto"] == "https"
    # www.APP.DOMAIN is served the same certificate (two labels deep: the operator's
    # certificate would name *.shop.DOMAIN too for clients to accept it)
    assert tls_get(https, ca, f"www.shop.{DOMAIN}", verify=False)[3] == wildcard
    # plain HTTP to a name with a valid certificate: 308 to the same path over HTTPS
    status, _, headers = https.get(f"shop.{DOMAIN}", "/a/b?c=1")
    assert status == 308
    assert headers["Location"] == f"https://shop.{DOMAIN}:{https.https_port}/a/b?c=1"
    # the ACME challenge path is never redirected
    assert https.get(f"shop.{DOMAIN}", "/.well-known/acme-challenge/none")[0] == 200


def test_domain_cert_refusals_then_upload_redirect_and_hsts(https, ca):
    name = "shop.example.com"
    assert ssh(https, "domain", "add", "shop", name, "--hsts").code == 0
    chain, key, leaf = ca.issue(name)
    expired, expired_key, _ = ca.issue(name, expired=True)
    other, other_key, _ = ca.issue("other.example.com")
    _, wrong_key, _ = ca.issue(name)
    for bundle, words, why in (
            (expired + expired_key, ("shop", name), "the certificate expired on"),
            (other + other_key, ("shop", name), f"does not cover {name}"),
            (chain + wrong_key, ("shop", name), "the private key does not match"),
            (b"not a certificate\n", ("shop", name), "malformed PEM"),
            (chain + key, ("shop", "nothere.example.com"), "shop has no domain nothere"),
            (b"", ("shop", name), "send the PEM chain and key on stdin")):
        r = ssh(https, "domain", "cert", *words, input=bundle)
        assert r.code != 0 and why in r.err and len(r.err.strip().splitlines()) == 1, r.text
    # nothing was stored: no certificate of its own, plain HTTP still served
    assert not (https.data / "tls" / name / "cert.pem").exists()
    assert https.get(name)[0] == 200

    r = ssh(https, "domain", "cert", "shop", name, input=key + chain)
    assert r.code == 0 and f"{name} is served with the uploaded certificate" in r.out, r.text
    assert oct((https.data / "tls" / name / "key.pem").stat().st_mode & 0o777) == "0o600"
    status, headers, body, serial = tls_get(https, ca, name)
    assert serial == leaf.serial_number and status == 200
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert json.loads(body)["proto"] == "https"
    status, _, headers = https.get(name, "/x")
    assert status == 308 and headers["Location"] == f"https://{name}:{https.https_port}/x"
    assert "strict-transport-security" not in {k.lower() for k in headers}

    # --allow-http: the same certificate, plain HTTP kept, no HSTS
    both = "open.example.com"
    doc = json.loads(ssh(https, "domain", "add", "shop", both, "--allow-http", "--json").out)
    assert doc["allow_http"] is True and doc["hsts"] is False
    chain, key, _ = ca.issue(both)
    assert ssh(https, "domain", "cert", "shop", both, input=chain + key).code == 0
    assert https.get(both)[0] == 200
    status, headers, _, _ = tls_get(https, ca, both)
    assert status == 200 and "strict-transport-security" not in headers
    doc = json.loads(ssh(https, "domain", "cert", "shop", both, "--json",
                         input=chain + key).out)
    assert doc["certificate"]["state"] == "valid" and doc["certificate"]["source"] == "upload"


def test_router_killed_with_9_serves_https_from_the_stored_certificates(https, ca):
    name = "kill.example.com"
    assert ssh(https, "domain", "add", "shop", name).code == 0
    chain, key, leaf = ca.issue(name)
    assert ssh(https, "domain", "cert", "shop", name, input=chain + key).code == 0
    info = https.data / "run" / "router.json"
    old = fsutil.read_json(info)["pid"]
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        meta = fsutil.read_json(info) or {}
        if meta.get("pid") not in (None, old):
            break                # router.json is written once the new router listens
        assert time.monotonic() < deadline, "the router was not restarted"
        time.sleep(0.05)
    # the first request to the new router is served over HTTPS, with the stored certificate
    status, _, _, serial = tls_get(https, ca, name)
    assert status == 200 and serial == leaf.serial_number
    with pytest.raises(ssl.SSLError):
        tls_get(https, ca, "unknown.example.org")     # the wildcard, not valid for it
