"""``domicile.client.Client`` against a real server, every operation: typed results with the
contract's field names, one exception class per error code, ``If-Match``, pagination."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from domicile import client as dc
from tests.client.conftest import Target


@pytest.fixture
def api(target: Target, admin_key: str) -> Iterator[dc.Client]:
    with dc.Client(target.url, api_key=admin_key) as c:
        yield c


def test_register_and_placement(api: dc.Client, subject: str) -> None:
    first = api.register(subject, "RU")
    assert first == dc.Registration(subject, "RU", "ru-msk", "RU", "ru-msk-1", created=True)
    again = api.register(subject, "RU")
    assert again.created is False
    assert api.placement(subject) == dc.Placement(subject, "RU", "ru-msk", "RU", "ru-msk-1")

    with pytest.raises(dc.JurisdictionConflict) as conflict:
        api.register(subject, "DE")
    assert (conflict.value.code, conflict.value.status) == ("jurisdiction_conflict", 409)
    assert isinstance(conflict.value, dc.Conflict)
    assert "RU" in conflict.value.message


def test_refusals_raise_their_code(api: dc.Client, subject: str) -> None:
    with pytest.raises(dc.NoPermittedRegion) as refused:
        api.register(subject, "CN")
    assert (refused.value.code, refused.value.status) == ("no_permitted_region", 422)
    with pytest.raises(dc.SubjectNotFound) as missing:
        api.placement(subject)
    assert (missing.value.code, missing.value.status) == ("subject_not_found", 404)
    assert missing.value.request_id
    with pytest.raises(dc.InvalidSubjectId):
        api.placement("no spaces allowed")
    with pytest.raises(dc.InvalidJurisdiction):
        api.register(subject, "ZZ")


def test_records_with_if_match(api: dc.Client, subject: str) -> None:
    api.register(subject, "DE")
    meta = api.put_record(subject, "profile", "main", {"name": "Hans"})
    assert isinstance(meta, dc.RecordMeta)
    assert (meta.subject_id, meta.collection, meta.key, meta.version) == (
        subject,
        "profile",
        "main",
        1,
    )
    assert (meta.jurisdiction, meta.region, meta.shard) == ("DE", "eu-fra", "eu-fra-1")
    assert len(meta.content_sha256) == 64

    second = api.put_record(subject, "profile", "main", {"name": "Hans", "city": "Bonn"}, 1)
    assert second.version == 2
    with pytest.raises(dc.VersionMismatch) as stale:
        api.put_record(subject, "profile", "main", {"name": "lost update"}, if_match=1)
    assert (stale.value.code, stale.value.status) == ("version_mismatch", 412)
    assert isinstance(stale.value, dc.PreconditionFailed)

    record = api.get_record(subject, "profile", "main")
    assert record.data == {"name": "Hans", "city": "Bonn"}
    assert (record.version, record.shard, record.content_sha256) == (
        2,
        "eu-fra-1",
        second.content_sha256,
    )

    with pytest.raises(dc.VersionMismatch):
        api.delete_record(subject, "profile", "main", if_match='"1"')
    api.delete_record(subject, "profile", "main", if_match=2)
    with pytest.raises(dc.RecordNotFound) as gone:
        api.get_record(subject, "profile", "main")
    assert gone.value.status == 404


def test_list_records_iterates_every_page(api: dc.Client, subject: str) -> None:
    api.register(subject, "US")
    keys = [f"k{n:02d}" for n in range(7)]
    for key in keys:
        api.put_record(subject, "notes", key, {"n": key})
    api.put_record(subject, "other", "x", {"n": "x"})

    listed = list(api.list_records(subject, "notes", page_size=3))
    assert [r.key for r in listed] == keys
    assert all(isinstance(r, dc.Record) and r.data == {"n": r.key} for r in listed)
    assert [(r.collection, r.key) for r in api.list_records(subject)] == [
        *(("notes", k) for k in keys),
        ("other", "x"),
    ]
    # The first page is read by the call itself: an unknown subject raises there.
    with pytest.raises(dc.SubjectNotFound):
        api.list_records(subject + "-nobody")


def test_export_and_erase(api: dc.Client, subject: str) -> None:
    api.register(subject, "RU")
    api.put_record(subject, "profile", "main", {"name": "Ivan"})
    exported = api.export(subject)
    assert (exported.subject_id, exported.jurisdiction, exported.shard) == (
        subject,
        "RU",
        "ru-msk-1",
    )
    assert exported.exported_at
    assert [(r.collection, r.key, r.version, r.data) for r in exported.records] == [
        ("profile", "main", 1, {"name": "Ivan"})
    ]

    assert api.erase(subject) is None
    with pytest.raises(dc.SubjectNotFound):
        api.placement(subject)
    with pytest.raises(dc.SubjectNotFound):
        api.erase(subject)


def test_keys_and_scopes(target: Target, subject: str) -> None:
    anonymous = dc.Client(target.url, api_key="dmk_nobody_secret")
    with anonymous, pytest.raises(dc.Unauthorized) as refused:
        anonymous.placement(subject)
    assert (refused.value.code, refused.value.status) == ("unauthorized", 401)
    reader = dc.Client(target.url, api_key=target.server.key("records:read"))
    with reader, pytest.raises(dc.Forbidden) as forbidden:
        reader.register(subject, "RU")
    assert (forbidden.value.code, forbidden.value.status) == ("forbidden", 403)


def test_purpose_reaches_the_audit_log(
    api: dc.Client, target: Target, admin_key: str, subject: str
) -> None:
    api.register(subject, "RU", purpose="signup")
    api.put_record(subject, "profile", "main", {"name": "Ivan"}, purpose="onboarding")
    history = httpx.get(
        f"{target.url}/v1/audit/subjects/{subject}",
        headers={"Authorization": f"Bearer {admin_key}"},
    ).json()
    purposes = {e["event"]["event"]: e["event"].get("purpose") for e in history["entries"]}
    assert purposes == {"subject.registered": "signup", "record.put": "onboarding"}
    with pytest.raises(dc.InvalidPurpose):
        api.put_record(subject, "profile", "main", {}, purpose="x" * 300)


def test_ids_that_need_escaping_in_a_path(api: dc.Client) -> None:
    for odd in ("mail:ivan@example.org", "..", "."):
        api.register(odd, "RU")
        api.put_record(odd, "c", "k:@.", {"v": odd})
        assert api.get_record(odd, "c", "k:@.").data == {"v": odd}
        assert api.placement(odd).subject_id == odd
        api.erase(odd)


def test_a_record_too_large(api: dc.Client, subject: str) -> None:
    api.register(subject, "US")
    with pytest.raises(dc.RecordTooLarge) as large:
        api.put_record(subject, "blob", "b", {"x": "a" * (1 << 20)})
    assert (large.value.code, large.value.status) == ("record_too_large", 413)
