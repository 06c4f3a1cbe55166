"""Host allow-lists: the grammar of an entry, and URLs that try to pass for allowed ones."""

from __future__ import annotations

import pytest

from kvbackup.api.hosts import HostAllowList
from kvbackup.config import DEFAULT_BLOB_HOSTS, DEFAULT_VAULT_HOSTS
from kvbackup.errors import HostNotAllowedError, InvalidSpecError, NotPermittedError


def allowed(hosts: HostAllowList, url: str) -> bool:
    try:
        hosts.check(url, "vault")
    except HostNotAllowedError:
        return False
    return True


def hosts(*entries: str) -> HostAllowList:
    return HostAllowList.of("KVBACKUP_VAULT_HOSTS", entries)


VAULTS = hosts("*.vault.azure.net")
EMULATOR = hosts("127.0.0.1:*", "localhost:8443", "[::1]:*")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://payments.vault.azure.net", True, id="one label"),
        pytest.param("https://payments.vault.azure.net/", True, id="trailing slash"),
        pytest.param("https://a.payments.vault.azure.net", False, id="two labels"),
        pytest.param("https://vault.azure.net", False, id="no label"),
        pytest.param("https://paymentsvault.azure.net", False, id="suffix glued on"),
        pytest.param("https://payments.vault.azure.net.evil.example", False, id="suffix inside"),
    ],
)
def test_a_wildcard_stands_for_exactly_one_label_before_its_suffix(
    url: str, expected: bool
) -> None:
    assert allowed(VAULTS, url) is expected


def test_each_leading_wildcard_stands_for_one_label() -> None:
    zones = hosts("*.*.blob.storage.azure.net")

    assert allowed(zones, "https://account.z42.blob.storage.azure.net")
    assert not allowed(zones, "https://account.blob.storage.azure.net")
    assert not allowed(zones, "https://a.account.z42.blob.storage.azure.net")


def test_matching_ignores_case_in_the_entry_and_in_the_url() -> None:
    assert allowed(hosts("*.Vault.Azure.NET"), "https://PAYMENTS.vault.azure.net")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://payments.vault.azure.net:443", True, id="https default spelled"),
        pytest.param("https://payments.vault.azure.net:8443", False, id="another port"),
        pytest.param("http://payments.vault.azure.net", True, id="http default"),
        pytest.param("http://payments.vault.azure.net:443", False, id="443 is not http's"),
    ],
)
def test_an_entry_without_a_port_allows_only_the_schemes_default_port(
    url: str, expected: bool
) -> None:
    assert allowed(VAULTS, url) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://127.0.0.1:4443", True, id="any port"),
        pytest.param("https://127.0.0.1", True, id="default port"),
        pytest.param("https://127.0.0.2:4443", False, id="other address"),
        pytest.param("https://localhost:8443", True, id="named port"),
        pytest.param("https://localhost:8444", False, id="other port"),
        pytest.param("https://localhost", False, id="no port is 443"),
        pytest.param("https://localhost.evil.example:8443", False, id="longer name"),
    ],
)
def test_an_exact_entry_allows_its_host_on_its_port_or_on_any_with_a_star(
    url: str, expected: bool
) -> None:
    assert allowed(EMULATOR, url) is expected


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://evil.example@payments.vault.azure.net", id="host after @"),
        pytest.param("https://payments.vault.azure.net@evil.example", id="host before @"),
        pytest.param("https://user:secret@payments.vault.azure.net", id="password"),
    ],
)
def test_user_information_is_refused_whichever_side_of_it_is_allowed(url: str) -> None:
    assert not allowed(VAULTS, url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://payments.vault.azure.net.", id="trailing dot"),
        pytest.param("https://payments..vault.azure.net", id="empty label"),
        pytest.param("https://.vault.azure.net", id="leading dot"),
        pytest.param("https://pay_ments.vault.azure.net", id="underscore"),
    ],
)
def test_a_host_that_is_not_a_plain_dns_name_is_refused(url: str) -> None:
    assert not allowed(VAULTS, url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://127.1:4443", id="short form"),
        pytest.param("https://2130706433:4443", id="one number"),
        pytest.param("https://0x7f000001:4443", id="hexadecimal"),
        pytest.param("https://0x7f.0.0.1:4443", id="hexadecimal part"),
        pytest.param("https://0177.0.0.1:4443", id="octal"),
        pytest.param("https://127.0.0.01:4443", id="leading zero"),
        pytest.param("https://1.2.3.4.5:4443", id="numeric top-level label"),
        pytest.param("https://[::ffff:127.0.0.1]:4443", id="ipv4-mapped ipv6"),
    ],
)
def test_other_spellings_of_an_allowed_ip_address_are_refused(url: str) -> None:
    assert not allowed(EMULATOR, url)


def test_an_ipv6_address_is_compared_in_its_canonical_form() -> None:
    assert allowed(EMULATOR, "https://[0:0:0:0:0:0:0:1]:4443")
    assert not allowed(EMULATOR, "https://[::2]:4443")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://payments%2evault.azure.net", id="encoded dot"),
        pytest.param("https://%70ayments.vault.azure.net", id="encoded letter"),
        pytest.param("https://[::1%25eth0]:4443", id="ipv6 zone"),
    ],
)
def test_percent_encoding_in_the_host_is_refused(url: str) -> None:
    assert not allowed(hosts("*.vault.azure.net", "[::1]:*"), url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://evil.example\\.vault.azure.net", id="inside the host"),
        pytest.param("https://evil.example\\@payments.vault.azure.net", id="before @"),
        pytest.param("https://payments.vault.azure.net\\evil.example", id="after the host"),
    ],
)
def test_a_backslash_in_the_authority_is_refused(url: str) -> None:
    assert not allowed(VAULTS, url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://\u212a.vault.azure.net", id="kelvin sign lower-cases to k"),
        pytest.param("https://payments\uff0evault.azure.net", id="fullwidth dot"),
        pytest.param("https://b\u00fccher.vault.azure.net", id="international name"),
        pytest.param("https://payments.vault.azure.net\t", id="tab"),
        pytest.param("https://pay ments.vault.azure.net", id="space"),
    ],
)
def test_characters_outside_printable_ascii_are_refused_even_if_they_fold_to_allowed_ones(
    url: str,
) -> None:
    assert not allowed(VAULTS, url)


def test_an_international_name_is_allowed_in_its_xn_form() -> None:
    assert allowed(VAULTS, "https://xn--bcher-kva.vault.azure.net")


@pytest.mark.parametrize(
    "url", ["payments.vault.azure.net", "ftp://payments.vault.azure.net", "//x.vault.azure.net"]
)
def test_only_absolute_http_and_https_urls_are_accepted(url: str) -> None:
    assert not allowed(VAULTS, url)


def test_a_refused_host_is_named_with_the_setting_to_change() -> None:
    with pytest.raises(HostNotAllowedError) as refused:
        VAULTS.check("https://kubernetes.default.svc", "vault")

    assert isinstance(refused.value, NotPermittedError)
    assert refused.value.reason == "HostNotAllowed"
    assert not refused.value.temporary
    assert refused.value.message == (
        "vault host kubernetes.default.svc:443 is not in KVBACKUP_VAULT_HOSTS, so nothing was "
        "sent to it; a cluster admin can add it there"
    )


def test_a_refused_url_is_not_repeated_since_it_may_carry_a_secret() -> None:
    with pytest.raises(HostNotAllowedError, match="user information") as refused:
        VAULTS.check("https://user:hunter2@payments.vault.azure.net/?sig=s3cret", "vault")

    assert "hunter2" not in refused.value.message
    assert "s3cret" not in refused.value.message


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("*", id="everything"),
        pytest.param("*.net", id="a top-level domain"),
        pytest.param("*:*", id="every port of everything"),
        pytest.param("a.*.vault.azure.net", id="wildcard inside"),
        pytest.param("pay*.vault.azure.net", id="partial label"),
        pytest.param("*.10.0.0.1", id="wildcard before an address"),
        pytest.param("*.[::1]", id="wildcard before ipv6"),
        pytest.param("https://payments.vault.azure.net", id="a url"),
        pytest.param("user@payments.vault.azure.net", id="user information"),
        pytest.param("localhost:0", id="port zero"),
        pytest.param("localhost:65536", id="port too large"),
        pytest.param("localhost:", id="empty port"),
        pytest.param("[::1", id="unclosed bracket"),
        pytest.param("127.1:*", id="short address"),
        pytest.param("b\u00fccher.example", id="not ascii"),
        pytest.param("vault.azure.net.", id="trailing dot"),
    ],
)
def test_an_invalid_entry_is_refused_naming_the_setting(entry: str) -> None:
    with pytest.raises(InvalidSpecError, match="KVBACKUP_VAULT_HOSTS has an invalid entry"):
        hosts(entry)


def test_a_list_is_comma_separated_and_blanks_around_entries_do_not_count() -> None:
    parsed = HostAllowList.parse("KVBACKUP_VAULT_HOSTS", " *.vault.azure.net , ,127.0.0.1:*, ")

    assert str(parsed) == "*.vault.azure.net,127.0.0.1:*"


def test_a_list_without_entries_is_refused() -> None:
    with pytest.raises(InvalidSpecError, match="KVBACKUP_BLOB_HOSTS must name at least one"):
        HostAllowList.parse("KVBACKUP_BLOB_HOSTS", " , ")


@pytest.mark.parametrize(
    "vault",
    [
        "https://payments.vault.azure.net",
        "https://payments.managedhsm.azure.net",
        "https://payments.vault.azure.cn",
        "https://payments.managedhsm.azure.cn",
        "https://payments.vault.usgovcloudapi.net",
        "https://payments.managedhsm.usgovcloudapi.net",
    ],
)
def test_the_default_vault_hosts_allow_vaults_and_managed_hsms_of_every_azure_cloud(
    vault: str,
) -> None:
    assert allowed(DEFAULT_VAULT_HOSTS, vault)


@pytest.mark.parametrize(
    "account",
    [
        "https://backups.blob.core.windows.net",
        "https://backups-secondary.blob.core.windows.net",
        "https://backups.z17.blob.storage.azure.net",
        "https://backups.blob.core.chinacloudapi.cn",
        "https://backups.blob.core.usgovcloudapi.net",
    ],
)
def test_the_default_blob_hosts_allow_storage_accounts_of_every_azure_cloud(account: str) -> None:
    assert allowed(DEFAULT_BLOB_HOSTS, account)


@pytest.mark.parametrize(
    "url",
    [
        "https://kubernetes.default.svc",
        "https://kubernetes.default.svc.cluster.local:443",
        "https://10.96.0.1",
        "https://169.254.169.254",
        "https://127.0.0.1:6443",
        "https://localhost",
        "https://payments.vault.microsoftazure.de",
        "https://backups.blob.core.windows.net",
    ],
)
def test_the_default_vault_hosts_refuse_in_cluster_services_and_everything_but_key_vault(
    url: str,
) -> None:
    assert not allowed(DEFAULT_VAULT_HOSTS, url)
