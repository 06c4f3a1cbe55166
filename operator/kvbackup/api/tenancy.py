"""The cluster admin's rules: which namespaces may use the operator's own Azure identity,
for which vaults and blob containers, and whose snapshots they may restore with it. Parsed
from KVBACKUP_DEFAULT_IDENTITY_RULES."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from kvbackup.errors import InvalidSpecError

#: What one ``*`` in a URL pattern stands for: characters within one DNS label, port or
#: path segment, never a separator. fnmatch's ``*`` also matched ``.`` and ``/``, so
#: ``https://team-a-*`` reached ``https://team-a-x.vault.azure.net.evil.com`` and
#: ``https://acct.blob.core.windows.net/team-*`` any folder of any container.
_WITHIN_ONE_PART = r"[^./:@?#\[\]\\]*"
#: A URL pattern of its own: ``*`` alone, or an http(s) URL.
_URL_PATTERN = re.compile(r"^\*$|^https?://.+")


@dataclass(frozen=True)
class UrlPattern:
    """``*`` (every URL), or a URL in which each ``*`` stands for part of one host label,
    the port or one path segment. Case and a trailing slash do not matter."""

    text: str
    _regex: re.Pattern[str] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, where: str) -> UrlPattern:
        if not _URL_PATTERN.fullmatch(text):
            raise InvalidSpecError(
                f"{where}: {text!r} must be * or a URL such as https://team-a-*.vault.azure.net"
            )
        normalised = text.lower().rstrip("/")
        if normalised == "*":
            return cls(text, re.compile(r".*", re.DOTALL))
        parts = re.split(r"(\*)", normalised)
        regex = "".join(_WITHIN_ONE_PART if part == "*" else re.escape(part) for part in parts)
        return cls(text, re.compile(regex))

    def matches(self, url: str) -> bool:
        return self._regex.fullmatch(url.lower().rstrip("/")) is not None


@dataclass(frozen=True)
class IdentityRule:
    """Namespaces matching ``namespaces`` may use the operator's identity for vaults
    matching ``vault_urls`` and for blob containers (``<accountUrl>/<container>``) matching
    ``blob_urls``; there they may restore, besides their own namespace's snapshots, those
    of the namespaces matching ``restore_from_namespaces``."""

    namespaces: tuple[str, ...]
    vault_urls: tuple[UrlPattern, ...]
    blob_urls: tuple[UrlPattern, ...] = ()
    restore_from_namespaces: tuple[str, ...] = ()

    def allows(self, namespace: str, url: str, patterns: tuple[UrlPattern, ...]) -> bool:
        return _any_glob(self.namespaces, namespace) and any(
            pattern.matches(url) for pattern in patterns
        )

    def allows_restore_from(self, namespace: str, container_url: str, source: str) -> bool:
        """Whether ``namespace`` may restore, from the container, a snapshot that the
        operator wrote for namespace ``source``."""
        return self.allows(namespace, container_url, self.blob_urls) and _any_glob(
            self.restore_from_namespaces, source
        )


def _any_glob(patterns: tuple[str, ...], name: str) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def _listed(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise TypeError(f"{where} must be a list")
    return value


def _patterns(texts: object, where: str) -> tuple[UrlPattern, ...]:
    return tuple(UrlPattern.parse(str(text), where) for text in _listed(texts, where))


def _names(value: object, where: str) -> tuple[str, ...]:
    """Namespace names or globs (``team-*``)."""
    names = _listed(value, where)
    if not all(isinstance(name, str) and name for name in names):
        raise TypeError(f"{where} must list namespace names or globs")
    return tuple(str(name) for name in names)


#: A rule's fields; any other is refused, as a misspelt field would silently grant nothing.
_RULE_FIELDS = frozenset({"namespaces", "vaultUrls", "blobUrls", "restoreFromNamespaces"})


def _rule(rule: object) -> IdentityRule:
    if not isinstance(rule, dict):
        raise TypeError("each rule must be an object")
    unknown = sorted(set(rule) - _RULE_FIELDS)
    if unknown:
        raise ValueError(f"a rule has no field {', '.join(unknown)}")
    return IdentityRule(
        namespaces=_names(rule["namespaces"], "namespaces"),
        vault_urls=_patterns(rule.get("vaultUrls", []), "vaultUrls"),
        blob_urls=_patterns(rule.get("blobUrls", []), "blobUrls"),
        restore_from_namespaces=_names(
            rule.get("restoreFromNamespaces", []), "restoreFromNamespaces"
        ),
    )


def parse_rules(text: str, source: str) -> tuple[IdentityRule, ...]:
    """Rules as JSON: ``[{"namespaces": ["team-a"], "vaultUrls": [...], "blobUrls": [...],
    "restoreFromNamespaces": [...]}]``."""
    try:
        document = json.loads(text)
        if not isinstance(document, list):
            raise ValueError("expected a list of rules")
        return tuple(_rule(rule) for rule in document)
    except InvalidSpecError as error:
        raise InvalidSpecError(f"{source}: {error.message}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidSpecError(
            f"{source} must be a JSON list of {{namespaces: [...], vaultUrls: [...]}}: {error}"
        ) from None


def rule_allowing(
    namespace: str, *, vault_url: str = "", blob_url: str = "", restore_from: str = ""
) -> str:
    """The JSON of the one rule that would allow ``namespace`` this vault or container (and
    there, restoring ``restore_from``'s snapshots), as a refusal quotes it for the admin to
    add."""
    return json.dumps(
        {
            "namespaces": [namespace],
            "vaultUrls": [vault_url] if vault_url else [],
            **({"blobUrls": [blob_url]} if blob_url else {}),
            **({"restoreFromNamespaces": [restore_from]} if restore_from else {}),
        }
    )
