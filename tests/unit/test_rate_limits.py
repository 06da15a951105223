"""Per-address limits count a client as networks hand addresses out (IPv6 by its
/64, IPv4-mapped IPv6 as the IPv4 host), and the table of buckets is bounded by
dropping the least recently used one, never by forgetting everyone."""

from __future__ import annotations

import pytest

from gateway.http.limits import MAX_BUCKETS, Buckets, client_key


@pytest.mark.parametrize(("remote", "key"), [
    ("198.51.100.7", "198.51.100.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("::1", "::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("", ""),
    (None, ""),
    ("/run/intake.sock", "/run/intake.sock"),
])
def test_client_key__groups_addresses_as_networks_hand_them_out(remote: str | None,
                                                                key: str) -> None:
    assert client_key(remote) == key


def test_buckets__a_client_rotating_through_its_64_is_one_client() -> None:
    buckets = Buckets(rate=1.0, burst=3.0)
    waits = [buckets.take(client_key(f"2001:db8:1:2::{i:x}"), now=100.0) for i in range(10)]
    assert waits[:3] == [0.0, 0.0, 0.0] and all(w > 0 for w in waits[3:])
    assert buckets.take(client_key("2001:db8:1:3::1"), now=100.0) == 0.0  # another /64


def test_buckets__past_the_bound_the_least_recently_used_goes() -> None:
    buckets = Buckets(rate=1.0, burst=2.0, max_keys=3)
    for _ in range(2):
        buckets.take("busy", now=100.0)
    assert buckets.take("busy", now=100.0) > 0  # limited
    for key in ("a", "b", "c", "d"):  # a flood of new addresses
        buckets.take(key, now=100.0)
        assert buckets.take("busy", now=100.0) > 0  # still limited: never forgotten
    assert len(buckets) == 3


def test_buckets__bounded_by_default() -> None:
    buckets = Buckets(rate=1.0, burst=1.0)
    for i in range(MAX_BUCKETS + 10):
        buckets.take(str(i), now=1.0)
    assert len(buckets) == MAX_BUCKETS
    assert buckets.take(str(MAX_BUCKETS + 9), now=1.0) > 0  # the latest are kept
