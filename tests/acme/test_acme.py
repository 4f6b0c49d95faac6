"""Certificates from a real ACME server (pebble), validated by HTTP-01
through the router: issued on `domain add`, renewed at a third of their
lifetime left, failures reported with the CA's reason and retried with
backoff, a failed renewal keeping the certificate it renews, a killed
daemon carrying on from DATA, and a renewal under load."""
import http.client
import itertools
import json
import os
import signal
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from dotcloud import selfsigned
from loadgen import Load
from platform_helpers import git_repo, python_app

_names = itertools.count()
WAIT = 90.0       # generous: each wait ends as soon as its condition holds


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}{os.getpid() % 1000}"


def wait_until(check, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def certificate(p, app: str, name: str) -> dict:
    r = p.ssh("alice", "domain", "list", app, "--json")
    assert r.code == 0, r.text
    return next(d["certificate"] for d in json.loads(r.out)["domains"] if d["domain"] == name)


def status(p, name: str) -> dict:
    try:
        return json.loads((p.data / "tls" / name / "status.json").read_text())
    except FileNotFoundError:
        return {}


def stored(p, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((p.data / "tls" / name / "cert.pem").read_bytes())


def served(p, name: str) -> x509.Certificate:
    """The certificate the router presents for this name (SNI)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", p.https_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def valid(p, app: str, name: str) -> dict:
    return wait_until(lambda: (lambda c: c if c["state"] == "valid" else None)(
        certificate(p, app, name)), f"a valid certificate for {name}")


_added: list = []


@pytest.fixture(autouse=True)
def _remove_domains(acme_platform):
    """Each test's domains go when it ends: with 30 s certificates, names left
    behind would keep the one daemon renewing all the time."""
    yield
    while _added:
        app, name = _added.pop()
        acme_platform.ssh("alice", "domain", "rm", app, name)


def new_domain(p, prefix: str) -> tuple[str, str]:
    app = unique(prefix)
    assert p.ssh("alice", "create", app).code == 0
    name = f"www.{app}.test"
    r = p.ssh("alice", "domain", "add", app, name)
    assert r.code == 0, r.text
    _added.append((app, name))
    assert r.out == (f"{name} now routes to {app} (www); its certificate is being requested "
                     "(domain list shows its state)\n")
    return app, name


def acme_pid(p) -> int:
    return json.loads((p.data / "run" / "acme.json").read_text())["pid"]


def test_a_certificate_is_issued_on_domain_add(acme_platform):
    p = acme_platform
    started = time.monotonic()
    app, name = new_domain(p, "issued")
    cert = valid(p, app, name)
    print(f"domain add to a valid certificate: {time.monotonic() - started:.1f}s")
    leaf = stored(p, name)
    sans = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert sans.value.get_values_for_type(x509.DNSName) == [name]
    issuer = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert "Pebble" in issuer
    lifetime = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()
    assert abs(lifetime - p.ca.validity) <= 5, \
        f"pebble ignored certificateValidityPeriod: {lifetime}"
    assert cert["reason"] is None
    assert cert["not_after"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ") or \
        certificate(p, app, name)["not_after"] == \
        stored(p, name).not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")   # renewed between
    for file in ("cert.pem", "key.pem", "status.json"):
        assert (p.data / "tls" / name / file).stat().st_mode & 0o777 == 0o600
    assert (p.data / "acme" / "account.key").stat().st_mode & 0o777 == 0o600
    row = next(line for line in p.ssh("alice", "domain", "list", app).out.splitlines()
               if line.startswith(name))
    assert "valid until" in row
    # the router serves it by SNI (the stored one, or its renewal a moment later)
    wait_until(lambda: served(p, name).serial_number == stored(p, name).serial_number,
               "the router serving the stored certificate")


def test_the_router_answers_challenges_for_any_host(acme_platform):
    p = acme_platform
    where = p.data / "acme" / "challenges"
    where.mkdir(parents=True, exist_ok=True)
    (where / "tok-EN_1").write_bytes(b"tok-EN_1.thumbprint")
    try:
        for host in ("not-routed.example.net", "shop.localhost"):
            status_, body, headers = p.get(host, "/.well-known/acme-challenge/tok-EN_1")
            assert (status_, body) == (200, "tok-EN_1.thumbprint")
            assert headers["Content-Type"] == "text/plain"
        conn = http.client.HTTPConnection("127.0.0.1", p.http_port, timeout=10)
        conn.request("HEAD", "/.well-known/acme-challenge/tok-EN_1", headers={"Host": "a.test"})
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Content-Length"), resp.read()) == (200, "19", b"")
        assert resp.getheader("Connection") == "close"
        conn.close()
        conn.request("POST", "/.well-known/acme-challenge/tok-EN_1", body=b"x",
                     headers={"Host": "a.test"})
        assert conn.getresponse().status == 404      # only GET and HEAD are answered
        conn.close()
        # no file, or not a token: routed as any other path
        assert p.get("not-routed.example.net", "/.well-known/acme-challenge/other")[0] == 404
        assert p.get("not-routed.example.net", "/.well-known/acme-challenge/..%2Fx")[0] == 404
    finally:
        (where / "tok-EN_1").unlink()


def test_a_failed_validation_is_reported_and_retried_with_backoff(acme_platform):
    p = acme_platform
    app = unique("fails")
    name = f"www.{app}.test"
    p.ca.resolve(name, "127.0.0.2")        # where nothing listens: pebble cannot connect
    assert p.ssh("alice", "create", app).code == 0
    assert p.ssh("alice", "domain", "add", app, name).code == 0
    _added.append((app, name))
    failed = wait_until(lambda: (lambda s: s if s.get("attempts", 0) >= 3 else None)(
        status(p, name)), "three failed attempts")
    cert = certificate(p, app, name)
    assert cert["state"] == "failed" and cert["not_after"] is None
    assert f"validation of {name} failed: connection" in cert["reason"], cert["reason"]
    assert "127.0.0.2" in cert["reason"]
    # doubling: 1 s after the first failure, 2 s after the second, 4 s after the third
    assert 3.5 <= failed["next_try"] - failed["updated"] <= 4.5
    row = next(line for line in p.ssh("alice", "domain", "list", app).out.splitlines()
               if line.startswith(name))
    assert f"failed: validation of {name} failed" in row
    log = (p.data.parent / "up.log").read_text()
    assert "event='certificate_failed'" in log and f"name='{name}'" in log
    # the name resolves again: the next try succeeds
    p.ca.unresolve(name)
    valid(p, app, name)
    assert status(p, name)["attempts"] == 0


def test_a_certificate_is_renewed_with_a_third_of_its_life_left(acme_platform):
    p = acme_platform
    app, name = new_domain(p, "renews")
    valid(p, app, name)
    first = stored(p, name)
    key = (p.data / "tls" / name / "key.pem").read_bytes()
    st = status(p, name)
    lifetime = st["not_after"] - first.not_valid_before_utc.timestamp()
    assert abs(st["renew_after"] - (st["not_after"] - lifetime / 3)) < 1
    second = wait_until(lambda: (lambda c: c if c.serial_number != first.serial_number
                                 else None)(stored(p, name)), "a renewal")
    assert second.not_valid_after_utc > first.not_valid_after_utc
    assert second.not_valid_before_utc.timestamp() >= st["renew_after"] - 2
    assert (p.data / "tls" / name / "key.pem").read_bytes() == key   # the key is kept
    wait_until(lambda: served(p, name).serial_number != first.serial_number,
               "the router serving the renewed certificate")
    assert "renewal=True" in (p.data.parent / "up.log").read_text()


def test_a_failed_renewal_keeps_the_certificate(acme_platform):
    p = acme_platform
    app, name = new_domain(p, "keeps")
    valid(p, app, name)
    pem = (p.data / "tls" / name / "cert.pem").read_bytes()
    old = stored(p, name)
    p.ca.resolve(name, "127.0.0.2")
    try:
        wait_until(lambda: status(p, name).get("state") == "failed", "a failed renewal")
        cert = certificate(p, app, name)
        assert "127.0.0.2" in cert["reason"]
        assert cert["not_after"] == old.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert (p.data / "tls" / name / "cert.pem").read_bytes() == pem
        assert served(p, name).serial_number == old.serial_number      # HTTPS stays up
        row = next(line for line in p.ssh("alice", "domain", "list", app).out.splitlines()
                   if line.startswith(name))
        assert "failed:" in row and "serving the current one until" in row
    finally:
        p.ca.unresolve(name)
    valid(p, app, name)
    assert stored(p, name).serial_number != old.serial_number


def test_the_daemon_killed_mid_order_carries_on(acme_platform):
    p = acme_platform
    killed = None
    for _ in range(5):      # catch it while an order is open (its challenge is on disk)
        app, name = new_domain(p, "killed")
        pid = acme_pid(p)
        challenges = p.data / "acme" / "challenges"
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and status(p, name).get("state") != "valid":
            open_ = list(challenges.iterdir()) if challenges.is_dir() else []
            if open_:
                os.kill(pid, signal.SIGKILL)
                killed = name
                break
            time.sleep(0.005)
        if killed:
            break
    assert killed, "never saw an order open"
    assert status(p, killed)["state"] == "pending"
    wait_until(lambda: os.path.exists(f"/proc/{acme_pid(p)}") and acme_pid(p) != pid,
               "the supervisor restarting the daemon")
    valid(p, app, killed)
    # the killed order's challenges were cleared (other names' renewals may have new ones)
    assert not any(path.exists() for path in open_)


def test_domain_rm_removes_the_certificate_and_stops_renewing(acme_platform):
    p = acme_platform
    app, name = new_domain(p, "removed")
    valid(p, app, name)
    renew_after = status(p, name)["renew_after"]
    assert p.ssh("alice", "domain", "rm", app, name).code == 0
    assert not (p.data / "tls" / name).exists()
    # past the time it would have been renewed, nothing came back
    time.sleep(max(0.0, renew_after - time.time()) + 3)
    assert not (p.data / "tls" / name).exists()


@pytest.mark.slow
def test_renewal_under_load_fails_no_request(acme_platform, tmp_path):
    p = acme_platform
    app = unique("loaded")
    repo = git_repo(tmp_path / app, python_app("loaded v1"))
    r = p.push("alice", repo, app)
    assert r.code == 0, r.text
    name = f"www.{app}.test"
    # plain HTTP is redirected once the name is valid: 308s count as good answers
    assert p.ssh("alice", "domain", "add", app, name).code == 0
    _added.append((app, name))
    valid(p, app, name)
    first = stored(p, name)
    tls = ssl.create_default_context(cadata=p.ca.roots().decode())
    with Load(p.https_port, name, clients=4, tls=tls) as secure, \
            Load(p.http_port, name, clients=2) as plain:
        secure.wait_ok(20)
        plain.wait_ok(5)
        renewed = wait_until(lambda: (lambda c: c if c.serial_number != first.serial_number
                                      else None)(stored(p, name)), "a renewal")
        wait_until(lambda: served(p, name).serial_number == renewed.serial_number,
                   "the renewed certificate served")
        count = secure.total
        wait_until(lambda: secure.total > count + 50, "requests on the new certificate")
    print(f"renewal under load: https {secure.summary()}; http {plain.summary()}")
    assert secure.failures == 0, secure.errors[:5]
    assert plain.failures == 0, plain.errors[:5]
    assert set(secure.bodies) == {"loaded v1"}


def _self_signed(name: str) -> bytes:
    made = selfsigned.make(name, days=10)
    return made.cert_pem + made.key_pem


def test_an_uploaded_certificate_replaces_the_acme_one_for_good(acme_platform):
    p = acme_platform
    app, name = new_domain(p, "uploaded")
    valid(p, app, name)
    renew_after = status(p, name)["renew_after"]
    bundle = _self_signed(name)
    r = p.ssh("alice", "domain", "cert", app, name, input=bundle)
    assert r.code == 0, r.text
    uploaded = (p.data / "tls" / name / "cert.pem").read_bytes()
    # past the time the ACME certificate would have been renewed: still the upload
    time.sleep(max(0.0, renew_after - time.time()) + 3)
    assert (p.data / "tls" / name / "cert.pem").read_bytes() == uploaded
    assert status(p, name)["source"] == "upload"
    assert certificate(p, app, name)["state"] == "valid"


def test_an_account_the_ca_lost_is_registered_again(acme_platform):
    # last in this module: the restarted pebble has new roots
    p = acme_platform
    app, name = new_domain(p, "before")
    valid(p, app, name)
    account = json.loads((p.data / "acme" / "account.json").read_text())[p.ca.url]
    p.ca.restart()
    app, name = new_domain(p, "after")
    valid(p, app, name)
    assert status(p, name)["attempts"] == 0       # no failed try on the way
    assert json.loads((p.data / "acme" / "account.json").read_text())[p.ca.url] != account
    log = (p.data.parent / "up.log").read_text()
    assert "event='acme_account_lost'" in log
