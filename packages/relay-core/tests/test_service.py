"""The Relay service over MemoryStore: the documented scenarios, end to end."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from relay_core import (
    BulkError,
    ClaimConflictError,
    ClaimNotFoundError,
    ClaimStatus,
    CombiningStore,
    DecryptionError,
    DuplicateLicenseError,
    EventType,
    InvalidPublicKeyError,
    LicenseFileNotFoundError,
    LicenseFileReadError,
    LicenseNotFoundError,
    NoLicensesAvailableError,
    PoolNotFoundError,
    Relay,
    Transaction,
    VerificationError,
)
from relay_core.testing import FrozenClock, LicenseWriter, MemoryStore, tamper
from relay_core.testing.clock import to_timestamp

from .conftest import BEFORE_EXPIRY, LICENSE_1_GUID, LICENSE_1_KEY, LICENSE_2_KEY

NOW = to_timestamp("2026-11-28T12:00:00Z")
T = TypeVar("T")


def make(clock: FrozenClock | None = None, **options: object) -> Relay:
    return Relay(MemoryStore(), clock=clock or FrozenClock(NOW), **options)  # type: ignore[arg-type]


def lic(writer: LicenseWriter, key: str, **meta: object) -> tuple[bytes, str]:
    return writer.license(key=key, issued=NOW - 60, **meta), key  # type: ignore[arg-type]


def test_acceptance_scenario_with_the_real_keygen_file(fixtures: Path, public_key: str) -> None:
    """Add the real file before its expiry, lease, extend, exhaust, cull, and lease to another node."""
    clock = FrozenClock(BEFORE_EXPIRY)
    relay = Relay(MemoryStore(), clock=clock)
    relay.add_license(fixtures / "license_1.lic", LICENSE_1_KEY, public_key=public_key)
    lease = relay.claim("a")
    assert lease.status is ClaimStatus.CREATED
    assert lease.license.key == LICENSE_1_KEY
    assert lease.license.file == (fixtures / "license_1.lic").read_bytes()
    assert relay.claim("a").status is ClaimStatus.EXTENDED
    with pytest.raises(NoLicensesAvailableError, match="^no licenses available$"):
        relay.claim("b")
    clock.advance(61)
    assert relay.cull().released == 1
    assert relay.claim("b").license.guid == LICENSE_1_GUID


def test_the_real_file_is_refused_today_and_nothing_is_stored(
    fixtures: Path, public_key: str
) -> None:
    """With today's clock the fixture is expired; tampered, wrong-key and wrong-public-key fail too."""
    relay = make()
    path = fixtures / "license_1.lic"
    with pytest.raises(DecryptionError, match="license file is expired"):
        relay.add_license(path, LICENSE_1_KEY, public_key=public_key)
    before = make(FrozenClock(BEFORE_EXPIRY))
    with pytest.raises(VerificationError, match="license file is invalid"):
        before.add_license(tamper(path.read_bytes()), LICENSE_1_KEY, public_key=public_key)
    with pytest.raises(DecryptionError, match="license decryption failed"):
        before.add_license(path, LICENSE_2_KEY, public_key=public_key)
    with pytest.raises(VerificationError, match="license verification failed"):
        before.add_license(path, LICENSE_1_KEY, public_key=LicenseWriter.ed25519().public_key)
    assert relay.list_licenses() == [] == before.list_licenses()


def test_bulk_add_reports_every_failure_and_stores_nothing(
    writer: LicenseWriter, tmp_path: Path
) -> None:
    """One good file among bad ones is not stored; each bad item is reported in order."""
    relay = make()
    good = lic(writer, "GOOD")
    relay.add_license(*lic(writer, "TAKEN"), public_key=writer.public_key)
    taken = relay.list_licenses()[0]
    (tmp_path / "dir.lic").mkdir()
    items = [
        good,
        (tmp_path / "missing.lic", "K"),
        (tmp_path / "dir.lic", "K"),
        (b"garbage", "K"),
        (good[0], "WRONG"),
        (taken.file, taken.key),
    ]
    with pytest.raises(BulkError) as caught:
        relay.add_licenses(items, public_key=writer.public_key, pool="prod")
    kinds = [type(error) for _, error in caught.value.errors]
    assert kinds == [
        LicenseFileNotFoundError,
        LicenseFileReadError,
        VerificationError,
        DecryptionError,
        DuplicateLicenseError,
    ]
    assert (
        str(caught.value.errors[0][1]) == f"license file not found at '{tmp_path / 'missing.lic'}'"
    )
    assert [x.guid for x in relay.list_licenses()] == [taken.guid]
    assert relay.list_pools() == []


def test_same_file_twice_in_one_call_is_a_duplicate(writer: LicenseWriter) -> None:
    """A batch that names one license twice is refused as a duplicate."""
    relay = make()
    item = lic(writer, "K")
    with pytest.raises(BulkError) as caught:
        relay.add_licenses([item, item], public_key=writer.public_key)
    assert [str(e) for _, e in caught.value.errors] == [
        "license with the provided key already exists"
    ]


def test_bad_public_key_fails_before_any_file_is_read(tmp_path: Path) -> None:
    """An unusable public key is one error, not one per file."""
    with pytest.raises(InvalidPublicKeyError, match="^invalid public key"):
        make().add_licenses([(tmp_path / "nope", "K")], public_key="xyz")


def test_pools_isolate_claims_and_release(writer: LicenseWriter) -> None:
    """A pooled license is leased only through its pool, and released only there."""
    relay = make()
    relay.add_license(*lic(writer, "P"), public_key=writer.public_key, pool="prod")
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("n")
    with pytest.raises(PoolNotFoundError, match="^pool not found$"):
        relay.claim("n", "dev")
    assert relay.claim("n", "prod").status is ClaimStatus.CREATED
    with pytest.raises(ClaimNotFoundError, match="^claim not found$"):
        relay.release("n")
    with pytest.raises(PoolNotFoundError):
        relay.release("n", "dev")
    with pytest.raises(ClaimNotFoundError):
        relay.release("unknown", "dev")
    assert relay.release("n", "prod").node_id is None


def test_a_node_holding_a_lease_elsewhere_conflicts_only_where_a_license_is_free(
    writer: LicenseWriter,
) -> None:
    """Cross-pool claims give 409 when the pool has a free license, else 410 (Keygen Relay)."""
    relay = make()
    relay.add_license(*lic(writer, "A"), public_key=writer.public_key, pool="a")
    relay.add_license(*lic(writer, "G"), public_key=writer.public_key)
    relay.claim("n", "a")
    with pytest.raises(ClaimConflictError, match="^failed to claim license due to conflict$"):
        relay.claim("n")
    relay.claim("m")
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("n")


def test_without_heartbeats_a_second_claim_conflicts(writer: LicenseWriter) -> None:
    """Heartbeats off: re-claiming is a conflict and nothing is culled."""
    clock = FrozenClock(NOW)
    relay = make(clock, heartbeats=False)
    relay.add_license(*lic(writer, "K"), public_key=writer.public_key)
    relay.claim("n")
    with pytest.raises(ClaimConflictError):
        relay.claim("n")


def test_expired_files_are_never_handed_out(writer: LicenseWriter) -> None:
    """A stored file past its meta.expiry is skipped by claims."""
    clock = FrozenClock(NOW)
    relay = make(clock)
    relay.add_license(*lic(writer, "SHORT", expiry=NOW + 100), public_key=writer.public_key)
    relay.add_license(*lic(writer, "LONG", expiry=NOW + 10_000), public_key=writer.public_key)
    clock.advance(101)
    assert relay.claim("n").license.key == "LONG"
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("m")


def test_removing_a_leased_license_ends_the_lease_first(writer: LicenseWriter) -> None:
    """del of a leased license writes released, deactivated, removed, and the node may claim again."""
    relay = make()
    added = relay.add_license(*lic(writer, "K"), public_key=writer.public_key, pool="p")
    relay.add_license(*lic(writer, "K2"), public_key=writer.public_key, pool="p")
    relay.claim("n", "p")
    relay.remove_licenses([added.guid])
    events = [r.event for r in relay.audit_log(limit=3)]
    assert events == [
        EventType.LICENSE_REMOVED,
        EventType.NODE_DEACTIVATED,
        EventType.LICENSE_RELEASED,
    ]
    assert all(r.pool_name == "p" for r in relay.audit_log(limit=3))
    assert relay.claim("n", "p").status is ClaimStatus.CREATED


def test_remove_is_all_or_nothing_and_pool_scoped(writer: LicenseWriter) -> None:
    """Removing a known and an unknown id removes neither; a pool filter hides other pools."""
    relay = make()
    a = relay.add_license(*lic(writer, "A"), public_key=writer.public_key, pool="a")
    with pytest.raises(BulkError) as caught:
        relay.remove_licenses([a.guid, "nope"])
    assert [str(e) for _, e in caught.value.errors] == ["license nope: license not found"]
    relay.add_license(*lic(writer, "B"), public_key=writer.public_key, pool="b")
    with pytest.raises(BulkError):
        relay.remove_licenses([a.guid], pool="b")
    assert len(relay.list_licenses()) == 2
    assert [x.guid for x in relay.remove_licenses([a.guid], pool="a")] == [a.guid]


def test_get_license_and_list_by_pool(writer: LicenseWriter) -> None:
    """Licenses are found by GUID in any pool and listed per pool or all together."""
    relay = make()
    a = relay.add_license(*lic(writer, "A"), public_key=writer.public_key, pool="a")
    g = relay.add_license(*lic(writer, "G"), public_key=writer.public_key)
    assert relay.get_license(a.guid) == a
    with pytest.raises(LicenseNotFoundError, match="^license x: license not found$"):
        relay.get_license("x")
    assert relay.list_licenses() == [a, g]
    assert relay.list_licenses("a") == [a]
    with pytest.raises(PoolNotFoundError):
        relay.list_licenses("zzz")


def test_audit_off_writes_no_rows(writer: LicenseWriter) -> None:
    """With audit disabled nothing lands in the audit log."""
    relay = make(audit=False)
    relay.add_license(*lic(writer, "K"), public_key=writer.public_key, pool="p")
    relay.claim("n", "p")
    relay.release("n", "p")
    assert relay.audit_log() == []


def test_ttl_accepts_a_timedelta_and_sets_expiry(writer: LicenseWriter) -> None:
    """The lease expiry is now + TTL in whole seconds."""
    relay = make(ttl=timedelta(minutes=2, microseconds=5))
    relay.add_license(*lic(writer, "K"), public_key=writer.public_key)
    lease = relay.claim("n")
    assert (lease.expires_in, lease.expires_at) == (120, int(NOW) + 120)


@pytest.mark.parametrize("ttl", [-5, -0.5, float("nan"), float("inf"), timedelta(seconds=-1)])
def test_a_ttl_that_is_negative_or_not_finite_is_refused(ttl: float | timedelta) -> None:
    """A negative TTL would hand out leases that expire before they are granted."""
    with pytest.raises(ValueError, match="ttl must be"):
        make(ttl=ttl)


def test_license_text_passed_as_str_gets_a_one_line_error(writer: LicenseWriter) -> None:
    """A file read as text is not taken for a path: the message is short, on one line."""
    relay = make()
    text = writer.license(key="K").decode()
    with pytest.raises(LicenseFileReadError) as caught:
        relay.add_license(text, "K", public_key=writer.public_key)
    message = str(caught.value)
    assert "\n" not in message
    assert len(message) < 120
    assert "pass the license file's contents as bytes" in message
    assert relay.list_licenses() == []


def test_cull_uses_one_cutoff_and_spares_fresh_heartbeats(writer: LicenseWriter) -> None:
    """A heartbeat inside the TTL keeps the lease; one exactly TTL old is culled."""
    clock = FrozenClock(NOW)
    relay = make(clock)
    for key in ("A", "B"):
        relay.add_license(*lic(writer, key), public_key=writer.public_key)
    relay.claim("old")
    clock.advance(30)
    relay.claim("young")
    clock.advance(30)
    report = relay.cull()
    assert (report.released, report.culled) == (1, 1)
    assert relay.claim("young").status is ClaimStatus.EXTENDED
    with pytest.raises(ClaimNotFoundError):
        relay.release("old")


class _CombiningMemoryStore(MemoryStore):
    """A `CombiningStore`: counts the work handed to `run`."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    def run(self, work: Callable[[Transaction], T]) -> T:
        self.runs += 1
        with self.transaction() as tx:
            return work(tx)


def test_claim_release_and_cull_hand_their_work_to_a_combining_store(
    writer: LicenseWriter,
) -> None:
    store: CombiningStore = _CombiningMemoryStore()
    assert isinstance(store, _CombiningMemoryStore)
    clock = FrozenClock(NOW)
    relay = Relay(store, clock=clock)
    relay.add_license(*lic(writer, "A"), public_key=writer.public_key)
    relay.add_license(*lic(writer, "B"), public_key=writer.public_key)
    assert store.runs == 0  # the vendor's commands keep to transaction()
    assert relay.claim("n1").status is ClaimStatus.CREATED
    assert relay.claim("n1").status is ClaimStatus.EXTENDED
    assert relay.claim("n2").status is ClaimStatus.CREATED
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("n3")
    assert store.runs == 4
    assert relay.release("n2").node_id is None
    assert store.runs == 5
    clock.advance(relay.ttl)
    assert relay.cull().released == 1
    assert store.runs == 6


def test_admit_gates_only_new_seats_and_a_refusal_rolls_back(writer: LicenseWriter) -> None:
    """`claim(admit=...)` runs before a new lease, never for an extension; raising undoes it."""
    relay = make()
    relay.add_licenses([lic(writer, "K1"), lic(writer, "K2")], public_key=writer.public_key)
    calls: list[str] = []

    def admit() -> None:
        calls.append("new")

    def refuse() -> None:
        raise RuntimeError("over the limit")

    assert relay.claim("a", admit=admit).status is ClaimStatus.CREATED
    assert relay.claim("a", admit=refuse).status is ClaimStatus.EXTENDED
    assert calls == ["new"]
    audit_before = len(relay.audit_log())
    with pytest.raises(RuntimeError, match="over the limit"):
        relay.claim("b", admit=refuse)
    assert len(relay.audit_log()) == audit_before
    assert [x.node_id is not None for x in relay.list_licenses()].count(True) == 1
    assert relay.claim("b").status is ClaimStatus.CREATED
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("c", admit=refuse)  # no seat to take: the gate is not asked
