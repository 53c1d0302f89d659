"""The private-address guard: odd spellings, resolved names, allowed networks."""

from __future__ import annotations

import ipaddress

import pytest

from tasks.errors import CallbackForbidden
from tasks.ssrf import CallbackGuard, literal_address

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"{host}: no such name")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/h",
        "http://127.1/h",
        "http://2130706433/h",
        "http://0x7f000001/h",
        "http://0177.0.0.1/h",
        "http://0.0.0.0/h",
        "http://[::1]/h",
        "http://[::ffff:127.0.0.1]/h",
        "http://[::ffff:7f00:1]/h",
        "http://[::]/h",
        "http://10.1.2.3/h",
        "http://172.16.0.1/h",
        "http://192.168.1.1/h",
        "http://100.64.0.1/h",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/h",
        "http://[fe80::1]/h",
        "http://224.0.0.1/h",
        "http://[ff02::1]/h",
        "http://[2002:7f00:1::1]/h",
        "http://[64:ff9b::a00:1]/h",
        "https://rebind.example/h",  # resolves to a private address
        "https://mixed.example/h",  # one public, one private address: refused
        "ftp://example.com/h",
        "http:///nohost",
    ],
)
def test_private_and_odd_destinations_are_refused(url: str) -> None:
    guard = CallbackGuard(
        resolver=resolver(
            {"rebind.example": ["10.0.0.5"], "mixed.example": ["93.184.216.34", "127.0.0.1"]}
        )
    )
    with pytest.raises(CallbackForbidden) as err:
        guard.destination(url)
    assert err.value.code == "callback_url_forbidden"


def test_public_name_passes_and_keeps_its_checked_addresses() -> None:
    guard = CallbackGuard(resolver=resolver({"hooks.example": ["93.184.216.34"]}))
    dest = guard.destination("https://hooks.example:8443/cb?x=1")
    assert (dest.host, dest.port, dest.target) == ("hooks.example", 8443, "/cb?x=1")
    assert dest.addresses == ("93.184.216.34",)


def test_allowed_networks_open_loopback_only() -> None:
    guard = CallbackGuard(LOOPBACK, resolver=resolver({"localhost": ["127.0.0.1", "::1"]}))
    assert guard.destination("http://localhost:9000/h").addresses == ("127.0.0.1", "::1")
    assert guard.destination("http://[::ffff:127.0.0.1]/h").addresses
    with pytest.raises(CallbackForbidden):
        guard.destination("http://10.0.0.1/h")


def test_unresolvable_name_is_accepted_at_submit_but_not_at_delivery() -> None:
    guard = CallbackGuard(resolver=resolver({}))
    guard.check_at_submit("https://not-yet.example/h")
    with pytest.raises(OSError):
        guard.destination("https://not-yet.example/h")


def test_literal_spellings() -> None:
    assert str(literal_address("127.1")) == "127.0.0.1"
    assert str(literal_address("0x7f000001")) == "127.0.0.1"
    assert str(literal_address("[::1]")) == "::1"
    assert literal_address("example.com") is None
    assert literal_address("deadbeef.example") is None
