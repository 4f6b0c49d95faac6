"""The checks of an uploaded certificate bundle (dotcloud/certupload.py), in process;
the command over SSH is in tests/e2e/test_https.py. Also the store's domain
columns added to a database made before them."""
import sqlite3

import pytest
from tlskit import CA, key_pem

from dotcloud import certupload
from dotcloud.certupload import CertificateRefused, check, covers
from dotcloud.state import Store


@pytest.fixture(scope="module")
def ca():
    return CA()


def refused(bundle: bytes, name: str, match: str):
    with pytest.raises(CertificateRefused, match=match) as info:
        check(bundle, name)
    assert "\n" not in str(info.value)


def test_a_good_bundle_in_any_order(ca):
    chain, key, leaf = ca.issue("shop.example.com", "www.shop.example.com")
    for bundle in (chain + key, key + chain, chain.replace(b"\n", b"\r\n") + key):
        checked = check(bundle, "shop.example.com")
        assert checked.not_after == leaf.not_valid_after_utc.timestamp()
        assert checked.chain_pem.count(b"BEGIN CERTIFICATE") == 2
        assert checked.chain_pem.startswith(leaf.public_bytes(
            __import__("cryptography.hazmat.primitives.serialization",
                       fromlist=["Encoding"]).Encoding.PEM))
        assert b"BEGIN PRIVATE KEY" in checked.key_pem
    assert check(chain + key, "www.shop.example.com").names == ("shop.example.com",
                                                                "www.shop.example.com")


def test_wildcards_cover_one_label():
    assert covers(["*.example.com"], "shop.example.com")
    assert covers(["*.Example.com"], "SHOP.example.com.")
    assert not covers(["*.example.com"], "example.com")
    assert not covers(["*.example.com"], "a.shop.example.com")
    assert not covers(["shop.example.com"], "www.shop.example.com")


def test_a_wildcard_certificate_uploaded_for_a_name_under_it(ca):
    chain, key, _ = ca.issue("*.example.com")
    assert check(chain + key, "shop.example.com").names == ("*.example.com",)
    refused(chain + key, "a.b.example.com", "does not cover a.b.example.com")


def test_refusals_one_line_each(ca):
    chain, key, _ = ca.issue("shop.example.com")
    expired, expired_key, _ = ca.issue("shop.example.com", expired=True)
    _, other_key, _ = ca.issue("shop.example.com")
    refused(expired + expired_key, "shop.example.com", r"^the certificate expired on 20")
    refused(chain + key, "other.example.com",
            r"^the certificate does not cover other.example.com \(it is for shop.example.com\)")
    refused(chain + other_key, "shop.example.com", "^the private key does not match")
    refused(b"hello", "shop.example.com", "^malformed PEM: no -----BEGIN")
    refused(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" + key,
            "shop.example.com", "^malformed PEM: a certificate cannot be read")
    refused(chain + b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "shop.example.com", "^malformed PEM: the private key cannot be read")
    refused(chain, "shop.example.com", "^no private key in the PEM bundle")
    refused(key, "shop.example.com", "^no certificate in the PEM bundle")
    refused(chain + key + other_key, "shop.example.com", "^more than one private key")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    locked = load_pem_private_key(key, None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    refused(chain + locked, "shop.example.com", "^the private key is encrypted")
    assert key_pem     # the kit's helper is what the CA uses for keys
    assert certupload.MAX_BUNDLE >= 64 * 1024


def test_domain_columns_added_to_an_older_database(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE domains(domain TEXT PRIMARY KEY, app TEXT NOT NULL, "
               "service TEXT NOT NULL)")
    db.execute("INSERT INTO domains VALUES('old.example.com', 'shop', 'www')")
    db.commit()
    db.close()
    store = Store(path)
    assert store.domains() == [("old.example.com", "shop", "www")]
    assert store.domain_options() == {"old.example.com": {"allow_http": False, "hsts": False}}
    assert store.add_domain("new.example.com", "shop", "www", allow_http=True, hsts=True)
    assert store.domain_options("shop")["new.example.com"] == {"allow_http": True, "hsts": True}
    Store(path).close()          # opening again changes nothing
