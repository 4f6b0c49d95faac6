"""One certificate from an ACME CA (RFC 8555), validated by HTTP-01.

The protocol is certbot's `acme` library (JWS, nonces, polling); this module
only keeps the account and answers the challenges:

    DATA/acme/account.key          the account's key (EC P-256, 0600)
    DATA/acme/account.json         {directory: account URL} (0600)
    DATA/acme/challenges/TOKEN     the key authorization the router serves at
                                   /.well-known/acme-challenge/TOKEN

An account is registered once per directory with `acme_email` and kept;
one the CA no longer knows is registered again. Every failure becomes an
IssueFailed whose message is the CA's own reason where it gave one.
"""
from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import logs
from .datadir import DataDir
from .fsutil import read_json, write_atomic, write_json

log = logs.get("acme")

USER_AGENT = "dotcloud"
ORDER_TIMEOUT = 90.0          # seconds for validation and issuance of one order
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")


class IssueFailed(Exception):
    """The CA did not issue; the message says why (the CA's reason when it gave one)."""


def acme_dir(data: Path) -> Path:
    return DataDir(data).acme


def challenges_dir(data: Path) -> Path:
    return DataDir(data).challenges


def new_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Issuer:
    def __init__(self, data: Path, directory: str, email: str = "", ca_bundle: str = "",
                 timeout: float = ORDER_TIMEOUT):
        self.data = Path(data)
        self.directory = directory
        self.email = email
        self.verify = ca_bundle or True
        self.timeout = timeout
        self._client: client.ClientV2 | None = None

    # -- the account -------------------------------------------------------

    def _account_key(self) -> jose.JWK:
        path = acme_dir(self.data) / "account.key"
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            pem = new_key_pem()
            write_atomic(path, pem, mode=0o600)
        key = serialization.load_pem_private_key(pem, password=None)
        return jose.JWKEC(key=key)

    def _connect(self) -> client.ClientV2:
        if self._client is not None:
            return self._client
        acme_dir(self.data).mkdir(parents=True, exist_ok=True)
        os.chmod(acme_dir(self.data), 0o700)
        net = client.ClientNetwork(self._account_key(), alg=jose.ES256, verify_ssl=self.verify,
                                   user_agent=USER_AGENT, timeout=30)
        directory = client.ClientV2.get_directory(self.directory, net)
        acme = client.ClientV2(directory, net=net)
        accounts = read_json(acme_dir(self.data) / "account.json", {})
        uri = accounts.get(self.directory)
        if uri:
            net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
        else:
            self._register(acme, accounts)
        self._client = acme
        return acme

    def _register(self, acme: client.ClientV2, accounts: dict) -> None:
        contact = {"email": self.email} if self.email else {}
        try:
            regr = acme.new_account(messages.NewRegistration.from_data(
                terms_of_service_agreed=True, **contact))
        except errors.ConflictError as exc:      # this key has an account already
            regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            acme.net.account = regr
        accounts[self.directory] = regr.uri
        write_json(acme_dir(self.data) / "account.json", accounts, mode=0o600)
        log.info("acme_account_registered", directory=self.directory, account=regr.uri,
                 email=self.email or None)

    def _forget_account(self) -> None:
        accounts = read_json(acme_dir(self.data) / "account.json", {})
        accounts.pop(self.directory, None)
        write_json(acme_dir(self.data) / "account.json", accounts, mode=0o600)
        self._client = None

    # -- one certificate ---------------------------------------------------

    def issue(self, name: str, key_pem: bytes) -> bytes:
        """A certificate (leaf first, then its chain) for `name` and this key."""
        try:
            try:
                return self._issue(name, key_pem)
            except messages.Error as exc:
                if exc.code != "accountDoesNotExist":
                    raise
                # the CA lost or deleted our account: a new one, and the order again
                log.warning("acme_account_lost", directory=self.directory)
                self._forget_account()
                return self._issue(name, key_pem)
        except IssueFailed:
            raise
        except errors.ValidationError as exc:
            raise IssueFailed(_validation_reason(exc)) from None
        except messages.Error as exc:
            raise IssueFailed(_problem(exc)) from None
        except errors.TimeoutError:
            raise IssueFailed(f"the CA did not finish the order within {self.timeout:.0f}s") \
                from None
        except Exception as exc:             # the network, TLS, a bad answer
            self._client = None
            raise IssueFailed(f"cannot talk to the ACME server {self.directory}: "
                              f"{_one_line(exc)}") from None

    def _issue(self, name: str, key_pem: bytes) -> bytes:
        acme = self._connect()
        order = acme.new_order(crypto_util.make_csr(key_pem, [name]))
        written = []
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue                 # the CA remembers an earlier validation
                chall = next((c for c in authz.body.challenges
                              if isinstance(c.chall, challenges.HTTP01)), None)
                if chall is None:
                    raise IssueFailed(f"the CA offers no HTTP-01 challenge for {name}")
                response, validation = chall.response_and_validation(acme.net.key)
                token = chall.chall.encode("token")
                if not TOKEN_RE.fullmatch(token):
                    raise IssueFailed("the CA sent a malformed challenge token")
                path = challenges_dir(self.data) / token
                write_atomic(path, validation.encode(), mode=0o644)
                written.append(path)
                acme.answer_challenge(chall, response)
            # acme compares the deadline with a naive local now()
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.timeout)
            done = acme.poll_and_finalize(order, deadline)
        finally:
            for path in written:
                path.unlink(missing_ok=True)
        return done.fullchain_pem.encode()


def validity(cert_pem: bytes) -> tuple[float, float]:
    """(not_before, not_after) of the first certificate, as Unix times."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def _validation_reason(exc: errors.ValidationError) -> str:
    for authzr in exc.failed_authzrs:
        for chall in authzr.body.challenges:
            if chall.error is not None:
                return (f"validation of {authzr.body.identifier.value} failed: "
                        f"{_problem(chall.error)}")
    return "validation failed (the CA gave no reason)"


def _problem(error: messages.Error) -> str:
    kind = error.code or error.typ or "error"
    return _one_line(f"{kind}: {error.detail or error.title or ''}".rstrip(": "))


def _one_line(value) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 300 else text[:297] + "..."
