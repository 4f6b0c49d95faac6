"""The certificate daemon's decisions, and the failures it reports before a
CA validates anything: a reserved name, an ACME server that cannot be
reached, one whose HTTPS the CA bundle does not trust. The daemon runs in
process on its own data directory; nothing here fakes the CA."""
import socket
import time
from pathlib import Path

import pytest

from dotcloud import certificates, tlsstore
from dotcloud.settings import load
from dotcloud.state import Store
from pebble_ca import make_tls


def test_retries_double_up_to_the_cap():
    assert [certificates.retry_delay(n, 60, 3600) for n in (1, 2, 3, 6, 7, 30)] == \
        [60, 120, 240, 1920, 3600, 3600]


def test_what_is_due():
    assert certificates.due_at({"state": "pending", "next_try": 0}) == 0
    assert certificates.due_at({"state": "failed", "next_try": 50.0}) == 50.0
    assert certificates.due_at({"state": "valid", "renew_after": 70.0, "next_try": None}) == 70.0


def test_reserved_names_only_under_public_directories():
    public = certificates.PUBLIC_DIRECTORIES[0]
    for name in ("a.test", "x.localhost", "www.example.com", "a.b.internal", "example.org"):
        assert certificates.reserved(name, public), name
        assert not certificates.reserved(name, "https://ca.corp.lan/acme/directory"), name
    for name in ("shop.com", "mytest.io", "example.com.au", "latest"):
        assert not certificates.reserved(name, public), name


def test_the_states_as_domain_list_shows_them():
    later = time.time() + 86400
    assert certificates.describe({"state": "pending", "not_after": None, "reason": None}) == \
        "pending"
    valid = certificates.describe({"state": "valid", "not_after": certificates.iso(later),
                                   "reason": None})
    assert valid == f"valid until {certificates.iso(later)[:16].replace('T', ' ')} UTC"
    kept = certificates.describe({"state": "failed", "not_after": certificates.iso(later),
                                  "reason": "rateLimited: too many"})
    assert kept.startswith("failed: rateLimited: too many (serving the current one until ")
    expired = certificates.describe({"state": "failed", "not_after": "2020-01-02T03:04:05Z",
                                     "reason": "x"})
    assert expired == "failed: x (the last one expired 2020-01-02 03:04 UTC)"


def test_view_of_a_name_without_status_is_pending(tmp_path):
    assert certificates.view(tmp_path, "a.test") == \
        {"state": "pending", "not_after": None, "reason": None}
    tlsstore.set_status(tmp_path, "a.test", "valid", not_after=1767225600.0)
    assert certificates.view(tmp_path, "a.test")["not_after"] == "2026-01-01T00:00:00Z"


def _daemon(tmp_path: Path, *names: str, **config) -> certificates.Daemon:
    data = tmp_path / "data"
    data.mkdir()
    settings = load(data, **config)
    store = Store(settings.paths.db)
    for name in names:
        store.add_domain(name, "app", "www")
    return certificates.Daemon(settings)


def test_a_reserved_name_fails_at_once_without_asking_the_ca(tmp_path):
    daemon = _daemon(tmp_path, "www.example.com")      # Let's Encrypt, the default
    next_wake = daemon.step()
    st = tlsstore.status(daemon.data, "www.example.com")
    assert st["state"] == "failed" and st["attempts"] == 1
    assert st["reason"] == ("www.example.com is a reserved name that no public CA certifies; "
                            "upload a certificate with: domain cert APP www.example.com")
    assert next_wake == pytest.approx(st["next_try"]) and st["next_try"] > time.time() + 50
    assert not (daemon.data / "tls" / "www.example.com" / "cert.pem").exists()


def test_an_acme_server_that_cannot_be_reached(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]     # nothing listens once closed
    daemon = _daemon(tmp_path, "www.shop.test",
                     acme_directory=f"https://127.0.0.1:{port}/dir", acme_retry_first=7.0)
    daemon.step()
    st = tlsstore.status(daemon.data, "www.shop.test")
    assert st["state"] == "failed"
    assert st["reason"].startswith(f"cannot talk to the ACME server https://127.0.0.1:{port}/dir: ")
    assert st["next_try"] - st["updated"] == pytest.approx(7.0, abs=0.5)
    # the second failure waits twice as long
    tlsstore.set_status(daemon.data, "www.shop.test", "failed", next_try=0)
    daemon.step()
    st = tlsstore.status(daemon.data, "www.shop.test")
    assert st["attempts"] == 2 and st["next_try"] - st["updated"] == pytest.approx(14.0, abs=0.5)


def test_an_acme_server_the_ca_bundle_does_not_trust(tmp_path, acme_platform):
    other_ca = make_tls(tmp_path / "other")[0]
    daemon = _daemon(tmp_path, "www.shop.test", acme_directory=acme_platform.ca.url,
                     acme_ca_bundle=str(other_ca))
    daemon.step()
    st = tlsstore.status(daemon.data, "www.shop.test")
    assert st["state"] == "failed" and "CERTIFICATE_VERIFY_FAILED" in st["reason"], st["reason"]


def test_names_no_longer_wanted_lose_their_certificate(tmp_path):
    daemon = _daemon(tmp_path, "www.example.com")
    tlsstore.set_status(daemon.data, "gone.example.com", "valid", source="acme")
    tlsstore.set_status(daemon.data, "uploaded.example.com", "valid", source="upload")
    daemon.step()
    assert tlsstore.names(daemon.data) == ["uploaded.example.com", "www.example.com"]


@pytest.mark.parametrize("line, why", [
    ("acme_directory: acme-v02.api.letsencrypt.org/directory",
     "'acme_directory' must be the URL of an ACME directory"),
    ("acme_directory: 42", "'acme_directory' must be the URL of an ACME directory"),
    ("acme_ca_bundle: /nonexistent/ca.pem", "'acme_ca_bundle' /nonexistent/ca.pem is not a file"),
])
def test_bad_acme_settings_are_refused_with_one_line(tmp_path, line, why):
    from dotcloud.errors import UsageError
    (tmp_path / "config.yml").write_text(line + "\n")
    with pytest.raises(UsageError) as caught:
        load(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'config.yml'}: {why}") and "\n" not in message


def test_the_plan_of_a_step():
    now = 1000.0
    statuses = {
        "new.shop": None,                                                   # just added
        "retry.shop": {"state": "failed", "source": "acme", "next_try": 990.0},
        "later.shop": {"state": "failed", "source": "acme", "next_try": 1030.0},
        "renew.shop": {"state": "valid", "source": "acme", "renew_after": 1000.0},
        "fresh.shop": {"state": "valid", "source": "acme", "renew_after": 1500.0},
        "mine.shop": {"state": "valid", "source": "upload", "not_after": 900.0},
        "gone.shop": {"state": "valid", "source": "acme", "renew_after": 10.0},
        "gone-upload.shop": {"state": "valid", "source": "upload"},
    }
    wanted = set(statuses) - {"gone.shop", "gone-upload.shop"}
    todo = certificates.plan(wanted, statuses, now)
    assert todo.forget == ("gone.shop",)            # an upload is removed by domain rm only
    assert todo.start == ("new.shop",)
    assert todo.due == ("new.shop", "renew.shop", "retry.shop")
    assert todo.wake == 1030.0
    assert certificates.plan(set(), {}, now).wake == now + certificates.IDLE_WAKE
