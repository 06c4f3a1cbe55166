"""Operator settings, read once from the environment at start-up."""

from __future__ import annotations

import datetime
import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from kvbackup.api import azure_clouds
from kvbackup.api.hosts import HostAllowList
from kvbackup.api.schedule import parse_duration
from kvbackup.api.tenancy import IdentityRule, parse_rules
from kvbackup.errors import InvalidSpecError

DEFAULT_VAULT_HOSTS = HostAllowList.of("KVBACKUP_VAULT_HOSTS", azure_clouds.KEY_VAULT_HOSTS)
DEFAULT_BLOB_HOSTS = HostAllowList.of("KVBACKUP_BLOB_HOSTS", azure_clouds.BLOB_HOSTS)
#: Key Vault calls in flight at once, across all runs of the process.
DEFAULT_MAX_VAULT_CALLS = 32
#: Keys one run works on at once.
DEFAULT_KEYS_PER_RUN = 32
#: What KVBACKUP_MAX_VAULT_CALLS and KVBACKUP_KEYS_PER_RUN were before they had names of
#: their own; still read for either one not set by its name.
FORMER_CONCURRENCY_SETTING = "KVBACKUP_MAX_CONCURRENCY"
#: Every run lists the vault, backs up its keys and writes a snapshot, all within the
#: vault's and the operator's shared limits: a schedule of every few seconds is one
#: tenant taking them from the others. Five minutes refuses every cron of every minute.
DEFAULT_MIN_SCHEDULE_INTERVAL = datetime.timedelta(minutes=5)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise InvalidSpecError(f"{name} must be true or false, not {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidSpecError(f"{name} must be a finite number, not {raw!r}")
    if value < minimum:
        raise InvalidSpecError(f"{name} must be at least {minimum}, not {value}")
    return value


#: The forms the operator's log is written in (KVBACKUP_LOG_FORMAT).
LOG_FORMATS = ("text", "json")


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A count of at least one, from ``name``, else from the former shared variable."""
    source = name if env.get(name, "").strip() else FORMER_CONCURRENCY_SETTING
    return int(_number(env, source, default, minimum=1))


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``; unset or empty: the first."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return choices[0]
    if raw not in choices:
        raise InvalidSpecError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def _ip_address(env: Mapping[str, str], name: str, default: str) -> str:
    """An IPv4 or IPv6 address to listen on; a host name is refused, as it could resolve
    to any address."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise InvalidSpecError(
            f"{name} must be an IP address such as 0.0.0.0, 127.0.0.1 or ::, not {raw!r}"
        ) from None


def _duration(env: Mapping[str, str], name: str, default: datetime.timedelta) -> datetime.timedelta:
    """A duration as a spec writes one (``90s``, ``5m``, ``1h``)."""
    raw = env.get(name, "").strip()
    return parse_duration(raw, name) if raw else default


def _hosts(env: Mapping[str, str], default: HostAllowList) -> HostAllowList:
    """The allow-list a variable sets; unset or empty: ``default``, the Azure clouds."""
    raw = env.get(default.setting, "").strip()
    return HostAllowList.parse(default.setting, raw) if raw else default


@dataclass(frozen=True)
class Settings:
    """Everything the operator can be configured with; see README, "Operator settings"."""

    #: PEM bundle trusted for TLS to Key Vault (private CAs, TLS-inspecting proxies, emulators).
    ca_bundle: str | None = None
    #: Check that a vault's auth challenge names a Key Vault resource. Turn off only for
    #: private endpoints or emulators whose challenge names another host.
    verify_challenge_resource: bool = True
    #: Key Vault REST API version; empty means the SDK's default.
    keyvault_api_version: str | None = None
    #: Key Vault calls in flight at once, across all runs of the process: the fairly shared
    #: slots of adapters/fairshare.py.
    max_vault_calls: int = DEFAULT_MAX_VAULT_CALLS
    #: Keys one run (a backup, a restore, a verification, an export) works on at once; a run's
    #: memory follows it. Its keys' calls still wait for the process's vault call slots.
    keys_per_run: int = DEFAULT_KEYS_PER_RUN
    #: Key Vault operations per second per vault (Azure allows about 400/s for software keys).
    vault_rate_limit: float = 200.0
    #: First delay after a temporary failure; doubled on each retry up to retry_max_seconds
    #: (services/retry_policy.py).
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 600.0
    #: Age after which a snapshot without a manifest (a crashed run's leftovers) is deleted.
    incomplete_snapshot_grace_seconds: float = 3600.0
    #: Longest per-key list kept in a status (the manifest always holds every key).
    status_keys_limit: int = 100
    #: The shortest time a schedule may leave between two runs: a KeyBackup whose
    #: schedule may run more often (``@every 10s``, a cron of every minute) fails with
    #: InvalidSpec.
    min_schedule_interval: datetime.timedelta = DEFAULT_MIN_SCHEDULE_INTERVAL
    #: Namespaces to watch; empty means the whole cluster.
    watch_namespaces: tuple[str, ...] = ()
    #: "text": a line per record, naming the object it is about; "json": a JSON document
    #: per line, the object under "object", for log pipelines.
    log_format: str = LOG_FORMATS[0]
    #: Port of kopf's liveness endpoint (/healthz); 0 disables it.
    health_port: int = 8080
    #: Port of the Prometheus endpoint (/metrics); 0 disables it.
    metrics_port: int = 8081
    #: The address the metrics endpoint listens on: every IPv4 address by default, as a
    #: scrape by the pod's IP needs; 127.0.0.1 keeps it to the pod (a proxy sidecar).
    metrics_address: str = "0.0.0.0"
    #: Which namespaces may use the operator's own identity for which vaults; none by
    #: default, so that a tenant cannot borrow the operator's reach without the admin's say.
    default_identity_rules: tuple[IdentityRule, ...] = ()
    #: Hosts that vault URLs may name; every other one is refused before any request.
    vault_hosts: HostAllowList = DEFAULT_VAULT_HOSTS
    #: Hosts that storage account URLs (and connection strings) may name.
    blob_hosts: HostAllowList = DEFAULT_BLOB_HOSTS
    #: Namespace of the Lease that replicas elect their leader by; empty: this process
    #: runs alone and does everything (never run two such processes on one cluster).
    leader_election_namespace: str | None = None
    #: Name of that Lease; replicas of one deployment share it.
    leader_election_lease: str = "kvbackup-operator"
    #: How long a silent leader is trusted; a killed leader is replaced within this plus
    #: two renewal periods (each 2/15 of it), and a leader that cannot renew for two
    #: thirds of it stops its runs.
    leader_election_lease_seconds: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        health_port = int(_number(env, "KVBACKUP_HEALTH_PORT", 8080, minimum=0))
        metrics_port = int(_number(env, "KVBACKUP_METRICS_PORT", 8081, minimum=0))
        if metrics_port and metrics_port == health_port:
            raise InvalidSpecError(
                f"KVBACKUP_METRICS_PORT and KVBACKUP_HEALTH_PORT are both {metrics_port}: "
                "each endpoint needs a port of its own"
            )
        namespaces = tuple(
            ns.strip() for ns in env.get("KVBACKUP_WATCH_NAMESPACES", "").split(",") if ns.strip()
        )
        return cls(
            ca_bundle=env.get("KVBACKUP_CA_BUNDLE") or None,
            verify_challenge_resource=_flag(env, "KVBACKUP_VERIFY_CHALLENGE_RESOURCE", True),
            keyvault_api_version=env.get("KVBACKUP_KEYVAULT_API_VERSION") or None,
            max_vault_calls=_count(env, "KVBACKUP_MAX_VAULT_CALLS", DEFAULT_MAX_VAULT_CALLS),
            keys_per_run=_count(env, "KVBACKUP_KEYS_PER_RUN", DEFAULT_KEYS_PER_RUN),
            vault_rate_limit=_number(env, "KVBACKUP_VAULT_RATE_LIMIT", 200.0, minimum=0.1),
            retry_base_seconds=_number(env, "KVBACKUP_RETRY_BASE_SECONDS", 10.0, minimum=0.1),
            retry_max_seconds=_number(env, "KVBACKUP_RETRY_MAX_SECONDS", 600.0, minimum=0.1),
            incomplete_snapshot_grace_seconds=_number(
                env, "KVBACKUP_INCOMPLETE_SNAPSHOT_GRACE_SECONDS", 3600.0, minimum=0
            ),
            status_keys_limit=int(_number(env, "KVBACKUP_STATUS_KEYS_LIMIT", 100, minimum=1)),
            min_schedule_interval=_duration(
                env, "KVBACKUP_MIN_SCHEDULE_INTERVAL", DEFAULT_MIN_SCHEDULE_INTERVAL
            ),
            watch_namespaces=namespaces,
            log_format=_choice(env, "KVBACKUP_LOG_FORMAT", LOG_FORMATS),
            health_port=health_port,
            metrics_port=metrics_port,
            metrics_address=_ip_address(env, "KVBACKUP_METRICS_ADDRESS", "0.0.0.0"),
            default_identity_rules=(
                parse_rules(rules, "KVBACKUP_DEFAULT_IDENTITY_RULES")
                if (rules := env.get("KVBACKUP_DEFAULT_IDENTITY_RULES", "").strip())
                else ()
            ),
            vault_hosts=_hosts(env, DEFAULT_VAULT_HOSTS),
            blob_hosts=_hosts(env, DEFAULT_BLOB_HOSTS),
            leader_election_namespace=env.get("KVBACKUP_LEADER_ELECTION_NAMESPACE", "").strip()
            or None,
            leader_election_lease=env.get("KVBACKUP_LEADER_ELECTION_LEASE", "").strip()
            or "kvbackup-operator",
            leader_election_lease_seconds=_number(
                env, "KVBACKUP_LEADER_ELECTION_LEASE_SECONDS", 15.0, minimum=3
            ),
        )

    @property
    def incomplete_snapshot_grace(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.incomplete_snapshot_grace_seconds)
