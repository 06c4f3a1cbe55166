"""Host allow-lists: where the operator may send requests (KVBACKUP_VAULT_HOSTS and
KVBACKUP_BLOB_HOSTS).

A KeyBackup or KeyRestore names its own endpoints. Without a list, any namespace allowed
to create one could make the operator send requests to any in-cluster or external HTTPS
service and read fragments of the answers back in status (SSRF). Every endpoint is
therefore checked here before a client is built for it, so a refused one is never
resolved nor connected to.

Grammar of one entry (entries are comma-separated; case does not matter):

``*.vault.azure.net``
    one DNS label, then exactly this suffix. Each leading ``*`` stands for exactly one
    label (``*.*.blob.storage.azure.net``); ``*`` appears nowhere else, and the suffix
    has at least two labels, so no entry allows a whole top-level domain.
``localhost``, ``backups.example.com``, ``10.0.0.7``, ``[fd00::7]``
    exactly this host: a DNS name, an IPv4 address in dotted-decimal, or an IPv6
    address in brackets.
``host:8443``, ``host:*``
    this port, or any port. Without a port, an entry allows only the scheme's default
    (443 for https, 80 for http), whether or not the URL spells it out.

A URL is refused whatever the list says when its host could be read as another host by
another parser or a resolver: user information (``@``), percent-encoding, a backslash,
characters outside printable ASCII (international names must be written in their
``xn--`` form), an empty label or trailing dot, or a number that is not a canonical
dotted-decimal IPv4 address (``127.1``, ``0x7f.0.0.1``, ``2130706433``, ``0177.0.0.1``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from kvbackup.errors import HostNotAllowedError, InvalidSpecError

DEFAULT_PORTS = {"https": 443, "http": 80}
#: Loopback hosts in their canonical spelling (see ``_host``).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
#: Characters that make parsers disagree on where a host starts or ends, or what it is.
_TRICKS = (("@", "user information (@)"), ("%", "percent-encoding"), ("\\", "a backslash"))
_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<authority>[^/?#]*)", re.IGNORECASE)


def _plain(text: str) -> None:
    """Refuses what different parsers read differently, before anything is split."""
    if not (text.isascii() and text.isprintable()) or " " in text:
        raise ValueError(
            "only printable ASCII without spaces is accepted (write an international "
            "name in its xn-- form)"
        )
    for mark, what in _TRICKS:
        if mark in text:
            raise ValueError(f"it carries {what}")


def _host(text: str) -> str:
    """The host in its one canonical spelling: a lower-case DNS name, a dotted-decimal
    IPv4 address, or a compressed IPv6 address in brackets."""
    if text.startswith("["):
        try:
            address = ipaddress.IPv6Address(text[1:-1]) if text.endswith("]") else None
        except ValueError:
            address = None
        if address is None:
            raise ValueError(f"{text} is not an IPv6 address in brackets")
        return f"[{address}]"
    host = text.lower()
    try:
        # What the system's resolver would take for an IPv4 address, in any of the
        # spellings inet_aton accepts (127.1, 0x7f000001, 0177.0.0.1).
        canonical = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        canonical = None
    if canonical is not None:
        if host != canonical:
            raise ValueError(f"{text} reads as the IPv4 address {canonical}; write that instead")
        return host
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or len(host) > 253:
        raise ValueError(
            f"{text!r} is not a DNS name (labels of letters, digits and dashes, no empty "
            "label or trailing dot)"
        )
    if labels[-1].isdigit():
        raise ValueError(f"{text} ends in a number, so it is neither a DNS name nor an address")
    return host


def _split_port(authority: str) -> tuple[str, str | None]:
    """``host[:port]`` into its two parts; an IPv6 host keeps its brackets."""
    if authority.startswith("["):
        end = authority.find("]") + 1
        host, rest = (authority[:end], authority[end:]) if end else (authority, "")
    else:
        host, colon, port = authority.partition(":")
        rest = colon + port
    if not rest:
        return host, None
    if not rest.startswith(":"):
        raise ValueError(f"{authority} is not host[:port]")
    return host, rest[1:]


def _port(text: str) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise ValueError(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True)
class Endpoint:
    """Where a URL sends requests: its scheme, canonical host and port (the scheme's
    default when the URL names none)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def on_loopback(self) -> bool:
        """Whether it is this machine, where plain http may reach an emulator."""
        return self.host in LOOPBACK_HOSTS


def origin(url: str) -> str:
    """The scheme and authority ``url`` starts with, as written; "" when it has none.
    ``endpoint`` reads nothing else of a URL, so URLs of one origin share its verdict."""
    match = _URL.match(url)
    return match.group(0) if match else ""


def endpoint(url: str) -> Endpoint:
    """The endpoint of an absolute http(s) URL; ValueError saying why one is refused.

    The authority runs to the first ``/``, ``?`` or ``#``, so a backslash, which some
    parsers take for a ``/``, is inside it and refused there.
    """
    match = _URL.match(url)
    if match is None:
        raise ValueError("it is not an absolute URL")
    scheme, authority = match["scheme"].lower(), match["authority"]
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"its scheme {scheme} is neither https nor http")
    _plain(authority)
    host, port = _split_port(authority)
    return Endpoint(scheme, _host(host), DEFAULT_PORTS[scheme] if port is None else _port(port))


@dataclass(frozen=True)
class HostPattern:
    """One entry of an allow-list (see the module's grammar)."""

    #: The entry as written, lower-cased.
    text: str
    #: The exact host, or the suffix after the wildcard labels.
    host: str
    #: How many leading ``*`` labels precede ``host``.
    wildcards: int = 0
    #: The one port allowed; None: the scheme's default.
    port: int | None = None
    any_port: bool = False

    @classmethod
    def parse(cls, entry: str) -> HostPattern:
        _plain(entry)
        if "/" in entry:
            raise ValueError(f"{entry} is a URL; an entry names a host, e.g. *.vault.azure.net")
        text = entry.lower()
        host, port = _split_port(text)
        wildcards = 0
        while host.startswith("*."):
            host, wildcards = host[2:], wildcards + 1
        if "*" in host:
            raise ValueError(f"{entry}: * may only stand for whole leading labels, as in *.a.b")
        host = _host(host)
        if wildcards and not (_is_dns_name(host) and "." in host):
            raise ValueError(f"{entry}: a wildcard needs a DNS suffix of two labels or more")
        return cls(
            text=text,
            host=host,
            wildcards=wildcards,
            port=None if port in (None, "*") else _port(port),
            any_port=port == "*",
        )

    def matches(self, where: Endpoint) -> bool:
        if self.wildcards:
            labels = where.host.split(".")
            host_matches = (
                len(labels) == self.wildcards + self.host.count(".") + 1
                and ".".join(labels[self.wildcards :]) == self.host
            )
        else:
            host_matches = where.host == self.host
        wanted = DEFAULT_PORTS[where.scheme] if self.port is None else self.port
        return host_matches and (self.any_port or where.port == wanted)


def _is_dns_name(host: str) -> bool:
    """Whether a canonical host (see ``_host``) is a DNS name rather than an address."""
    return not host.startswith("[") and not host.rsplit(".", 1)[-1].isdigit()


@dataclass(frozen=True)
class HostAllowList:
    """The hosts one setting allows; ``setting`` names it in every refusal."""

    setting: str
    patterns: tuple[HostPattern, ...]

    @classmethod
    def of(cls, setting: str, entries: Iterable[str]) -> HostAllowList:
        """The list of ``entries``; a malformed or missing entry stops the operator's start."""
        patterns = []
        for entry in entries:
            try:
                patterns.append(HostPattern.parse(entry))
            except ValueError as error:
                raise InvalidSpecError(f"{setting} has an invalid entry: {error}") from None
        if not patterns:
            raise InvalidSpecError(f"{setting} must name at least one host pattern")
        return cls(setting, tuple(patterns))

    @classmethod
    def parse(cls, setting: str, text: str) -> HostAllowList:
        """Comma-separated entries; blanks around them and empty ones are ignored."""
        return cls.of(setting, (entry.strip() for entry in text.split(",") if entry.strip()))

    def __str__(self) -> str:
        return ",".join(pattern.text for pattern in self.patterns)

    def allows(self, where: Endpoint) -> bool:
        return any(pattern.matches(where) for pattern in self.patterns)

    def check(self, url: str, what: str) -> None:
        """Refuses ``url``, the endpoint of ``what`` (e.g. "vault"), unless it is allowed."""
        try:
            where = endpoint(url)
        except ValueError as error:
            # The URL itself is not repeated: it may carry a password or a SAS token.
            raise HostNotAllowedError(
                f"{what} URL refused before any request: {error}; {self.setting} allows "
                "plain host names only"
            ) from None
        if not self.allows(where):
            raise HostNotAllowedError(
                f"{what} host {where} is not in {self.setting}, so nothing was sent to it; "
                "a cluster admin can add it there"
            )
