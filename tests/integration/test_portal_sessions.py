"""The portal's server-side sessions on a real database (SQLite and PostgreSQL): the schema
comes from the migrations, rows hold only a hash of the id and sealed data, and a logout ends
the session for every copy of the cookie."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from portal.sessions import SqlSessionStore, StoredSession
from tests.unit.portal_fakes import ALICE, Harness, csrf_of, harness

Make = Callable[[str], tuple[str, str | None]]


@pytest.fixture
def store(db_url_factory: Make) -> Iterator[SqlSessionStore]:
    url, schema = db_url_factory("portal")
    opened = SqlSessionStore.open(url, schema=schema)
    yield opened
    opened.close()


def test_update_never_brings_back_a_deleted_session(store: SqlSessionStore) -> None:
    """A request that began before a logout and ends after it must not revive the session."""
    store.create("a" * 64, StoredSession(1, 1, 100, b"sealed"))
    assert store.update("a" * 64, 2, b"newer")
    assert store.load("a" * 64) == StoredSession(1, 2, 100, b"newer")
    store.delete("a" * 64)
    assert not store.update("a" * 64, 3, b"late")
    assert store.load("a" * 64) is None


def test_expired_and_idle_sessions_are_purged(store: SqlSessionStore) -> None:
    store.create("a" * 64, StoredSession(1, 1, 100, b"old"))
    store.create("b" * 64, StoredSession(1, 50, 500, b"current"))
    store.create("c" * 64, StoredSession(1, 10, 500, b"idle"))
    assert store.purge(100, 20) == 2
    assert store.load("b" * 64) is not None
    assert store.load("a" * 64) is None and store.load("c" * 64) is None


def test_migrating_twice_keeps_the_sessions(db_url_factory: Make) -> None:
    url, schema = db_url_factory("portal_again")
    first = SqlSessionStore.open(url, schema=schema)
    first.create("c" * 64, StoredSession(1, 1, 100, b"kept"))
    first.close()
    second = SqlSessionStore.open(url, schema=schema)
    try:
        assert second.load("c" * 64) is not None
    finally:
        second.close()


def _portal(store: SqlSessionStore) -> Harness:
    h = harness()
    h.sessions = store  # type: ignore[assignment]
    h.world.record(ALICE)
    h.world.publish()
    return h


def test_copied_cookie_is_refused_after_logout_on_the_database(store: SqlSessionStore) -> None:
    h = _portal(store)
    client = h.client()
    h.login(client, ALICE)
    copied = client.cookies["__Host-cdx_session"]
    thief = h.client()
    thief.cookies.set("__Host-cdx_session", copied, domain="portal.test")
    assert thief.get("/me/access").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/me/access").text)})
    assert thief.get("/me/access").status_code == 303


def test_sessions_survive_a_portal_restart(store: SqlSessionStore) -> None:
    """Replicas and restarts share the database (and the key derived from the passphrase)."""
    h = _portal(store)
    client = h.client()
    h.login(client, ALICE)
    cookie = client.cookies["__Host-cdx_session"]
    restarted = h.client()  # a new app over the same store and key
    restarted.cookies.set("__Host-cdx_session", cookie, domain="portal.test")
    assert restarted.get("/me/access").status_code == 200
