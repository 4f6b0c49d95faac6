"""TLS for the router: the certificates on disk, one SSLContext per name, chosen by SNI.

The listening context only holds the SNI callback; each handshake switches
to the context of the name the client asked for: its own certificate
(DATA/tls/NAME, uploaded or issued), else the platform's `tls_cert`/`tls_key`
(the `*.DOMAIN` wildcard, also the fallback for unknown names), else the
handshake fails with an alert. load() builds every context anew and swaps
the map in one assignment: connections already open keep the context they
shook hands with, new ones get the new certificates at once. A broken pair
on disk is skipped with a log line, and what was loaded for that name before
(if anything) stays in service: a renewal caught half-written, or one
that wrote garbage, never takes HTTPS down.
It reads cert.pem and key.pem only (status.json belongs to the writers).
"""
from __future__ import annotations

import ssl
import time
from pathlib import Path

from cryptography import x509

from dotcloud import tlsstore
from dotcloud.certupload import covers

PLATFORM = "_platform"


def server_context(cert: Path | str, key: Path | str) -> ssl.SSLContext:
    """TLS 1.2 and 1.3 for HTTP/1.1, with one certificate (chain) and its key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def leaf_of(cert: Path | str) -> x509.Certificate:
    """The first certificate of the file (the leaf, its chain follows)."""
    return x509.load_pem_x509_certificate(Path(cert).read_bytes())


def dns_names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        return tuple(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                     .value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return ()


class Certificates:
    def __init__(self, data_dir: Path, platform_cert: str = "", platform_key: str = "",
                 log=None):
        self.data_dir = Path(data_dir)
        self.platform_cert = platform_cert
        self.platform_key = platform_key
        self.log = log
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.platform: ssl.SSLContext | None = None
        self.platform_names: tuple[str, ...] = ()    # what the platform's certificate covers
        self.expiry: dict[str, float] = {}       # name (or _platform) -> not_after
        self.listening = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.listening.minimum_version = ssl.TLSVersion.TLSv1_2
        self.listening.set_alpn_protocols(["http/1.1"])
        self.listening.sni_callback = self._choose

    # -- loading -----------------------------------------------------------

    def load(self) -> int:
        """Read every certificate again; return how many were loaded."""
        contexts, expiry = {}, {}
        old_contexts, old_expiry = self.contexts, self.expiry
        for name in tlsstore.names(self.data_dir):
            if name.startswith("_"):
                continue
            where = tlsstore.directory(self.data_dir, name)
            if not (where / "cert.pem").exists():
                continue          # pending: nothing issued yet
            loaded = self._load_pair(name, where / "cert.pem", where / "key.pem")
            if loaded is not None:
                # checked against NAME when stored (upload, ACME)
                contexts[name], expiry[name], _ = loaded
            elif name in old_contexts:
                # a pair caught half-written (the key is written before its
                # certificate) or broken: what was served goes on being served
                contexts[name], expiry[name] = old_contexts[name], old_expiry[name]
        platform, platform_names = None, ()
        if self.platform_cert and self.platform_key:
            loaded = self._load_pair(PLATFORM, self.platform_cert, self.platform_key)
            if loaded is not None:
                platform, expiry[PLATFORM], platform_names = loaded
            elif self.platform is not None:
                platform, platform_names = self.platform, self.platform_names
                expiry[PLATFORM] = old_expiry[PLATFORM]
        # one assignment each: the SNI callback sees the old map or the new one
        self.contexts, self.platform, self.expiry = contexts, platform, expiry
        self.platform_names = platform_names
        if self.log is not None:
            self.log.info("certificates_loaded", names=len(contexts),
                          platform=platform is not None)
        return len(expiry)

    def _load_pair(self, name: str, cert, key):
        try:
            leaf = leaf_of(cert)
            return (server_context(cert, key), leaf.not_valid_after_utc.timestamp(),
                    dns_names(leaf))
        except (OSError, ssl.SSLError, ValueError) as exc:
            if self.log is not None:
                self.log.warning("certificate_skipped", name=name, error=str(exc) or
                                 type(exc).__name__)
            return None

    # -- serving -----------------------------------------------------------

    def context_for(self, name: str | None) -> ssl.SSLContext | None:
        if name:
            name = name.lower().rstrip(".")
            contexts = self.contexts
            ctx = contexts.get(name)
            if ctx is not None:
                return ctx
            # a name's parent may hold a wildcard certificate uploaded for *.PARENT
            ctx = contexts.get("*." + name.partition(".")[2])
            if ctx is not None:
                return ctx
        return self.platform

    def _choose(self, sslobj, name, _listening):
        ctx = self.context_for(name)
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sslobj.context = ctx
        return None

    def valid_names(self, domain: str, hosts, now: float | None = None) -> set[str]:
        """Of these hosts, those served a certificate that has not expired and
        names them (the platform's wildcard covers APP.DOMAIN, and
        SERVICE.APP.DOMAIN only if it also names *.APP.DOMAIN)."""
        now = time.time() if now is None else now
        expiry = self.expiry
        platform_ok = self.platform is not None and expiry.get(PLATFORM, 0) > now
        suffix = "." + domain
        valid = set()
        for host in hosts:
            own = host if host in expiry else "*." + host.partition(".")[2]
            if own in expiry:
                if expiry[own] > now:
                    valid.add(host)
            elif (platform_ok and host.endswith(suffix)
                  and covers(self.platform_names, host)):
                valid.add(host)
        return valid

    def next_expiry(self, now: float | None = None) -> float:
        """When the next certificate still valid now expires (inf: none)."""
        now = time.time() if now is None else now
        return min((t for t in self.expiry.values() if t > now), default=float("inf"))

    def seconds_left(self, now: float | None = None) -> dict[str, float]:
        now = time.time() if now is None else now
        return {name: t - now for name, t in sorted(self.expiry.items())}
