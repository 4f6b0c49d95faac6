"""dotcloud.selfsigned: the one recipe for a key and a certificate signed by it."""
import datetime
import ipaddress
import ssl

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from dotcloud import selfsigned


def test_a_host_certificate_names_addresses_as_addresses_and_loads_in_ssl(tmp_path):
    made = selfsigned.make("127.0.0.1", "db.example.com", days=10)
    names = made.cert.extensions.get_extension_for_oid(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["db.example.com"]
    assert made.cert.issuer == made.cert.subject
    now = datetime.datetime.now(datetime.timezone.utc)
    assert made.cert.not_valid_before_utc < now < made.cert.not_valid_after_utc
    left = made.cert.not_valid_after_utc - now
    assert datetime.timedelta(days=9, hours=23) < left <= datetime.timedelta(days=10)
    (tmp_path / "c.pem").write_bytes(made.cert_pem)
    (tmp_path / "k.pem").write_bytes(made.key_pem)
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    assert made.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_a_ca_has_no_alt_names_and_may_sign():
    made = selfsigned.make("test CA", ca=True)
    constraints = made.cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert constraints.critical and constraints.value.ca
    assert not any(e.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME for e in made.cert.extensions)
    ssl.create_default_context(cadata=made.cert_pem.decode())
