"""The consent service's register of legal representatives: the authority registers, amends and
ends relations; citizens see whom they may act for and who may act for them; the consent
service and the audit log ask whether one person may act for another now (docs/adr/0018).

Authorisation here: only the subsystem global configuration designates as the representation
authority (``representation_authority``) changes relations (the servicer has already checked
that the caller acts for the subsystem it names). Checks (``check``, ``grant_in``) read the
relations at the service's clock; ``grant_in`` and ``minor_until_in`` run inside the caller's
transaction, so a consent change and the relation that allowed it are read together.

Relations are personal data: the people are indexed only by their keyed tags, everything that
names or describes them is sealed (``consent.relation_store``); nothing here logs a national
id. Each change appends a ``relation_events`` row (append-only).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
import uuid6
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from cdx import db, errors
from cdx.clock import Clock, utcnow
from cdx.globalconf import VerifiedGlobalConf
from cdx.ids import CitizenId
from cdx.representation import RelationKind, RepresentationGrant, Scope
from consent import relation_store as rs
from consent.model import canonical_json, from_ms, ms, subject_tag
from consent.relations import (
    Relation,
    RelationTerms,
    check_amendment,
    check_end,
    check_terms,
    choose,
    minor_until,
)
from consent.sealing import PREFIX, DataKeys

log = logging.getLogger(__name__)

MAX_LIST = 200
REGISTERED, AMENDED, ENDED = "registered", "amended", "ended"

ConfSource = Callable[[], VerifiedGlobalConf]


def _relation(row: Any, keys: DataKeys) -> Relation:
    """The relation of a ``relations`` row, its sealed part opened with ``keys``.

    Raises:
        KeyStoreError: the sealed part does not open.
        MalformedError: it opens but does not parse.
    """
    try:
        sealed = json.loads(keys.open(row.id, rs.SEALED_COLUMN, row.sealed))
        terms = RelationTerms(
            kind=RelationKind(row.kind),
            representative=CitizenId(sealed["representative"]),
            represented=CitizenId(sealed["represented"]),
            scopes=frozenset(Scope(s) for s in row.scopes.split()),
            valid_from=from_ms(int(row.valid_from_ms)),
            valid_until=from_ms(int(row.valid_until_ms)) if row.valid_until_ms else None,
            majority_on=(
                date.fromisoformat(sealed["majority_on"]) if sealed.get("majority_on") else None
            ),
            reference=str(sealed.get("reference", "")),
            representative_name=str(sealed.get("representative_name", "")),
            represented_name=str(sealed.get("represented_name", "")),
        )
        end_reason = str(sealed.get("end_reason", ""))
    except (ValueError, KeyError, TypeError, errors.InvalidArgumentError) as exc:
        raise errors.MalformedError("a stored relation does not parse") from exc
    return Relation(
        id=row.id,
        terms=terms,
        authority=row.authority,
        version=int(row.version),
        created_at=from_ms(int(row.created_at_ms)),
        updated_at=from_ms(int(row.updated_at_ms)),
        ended_at=from_ms(int(row.ended_at_ms)) if row.ended_at_ms else None,
        end_reason=end_reason,
    )


def _sealed_json(terms: RelationTerms, end_reason: str) -> str:
    return canonical_json(
        {
            "representative": terms.representative.value,
            "represented": terms.represented.value,
            "majority_on": terms.majority_on.isoformat() if terms.majority_on else None,
            "reference": terms.reference,
            "representative_name": terms.representative_name,
            "represented_name": terms.represented_name,
            "end_reason": end_reason,
        }
    )


class RelationBook:
    """Legal representation relations over the consent database (SQLite or PostgreSQL).

    ``tag_key`` and ``data_keys`` are the consent service's own (the people's tags are the tags
    their consents carry); ``conf`` names the representation authority; ``clock`` is the only
    clock. Implements ``cdx.representation.RepresentationChecker``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        tag_key: bytes,
        data_keys: DataKeys,
        conf: ConfSource,
        clock: Clock = utcnow,
    ) -> None:
        self._engine = engine
        self._writer = db.writer(engine)
        self._tag_key = tag_key
        self._keys = data_keys
        self._conf = conf
        self._clock = clock

    def _tag(self, person: CitizenId) -> str:
        return subject_tag(self._tag_key, person)

    # --- plumbing ------------------------------------------------------------------------------

    def _read(self, fn: Callable[[Connection], Any]) -> Any:
        try:
            with self._engine.connect() as conn:
                return fn(conn)
        except sa.exc.OperationalError:
            raise errors.UnavailableError("the consent database is unavailable") from None
        except sa.exc.SQLAlchemyError as exc:
            raise _database_error(exc) from None

    def _write(self, fn: Callable[[Connection, datetime], Any]) -> Any:
        now = self._clock()
        try:
            with self._writer.begin() as conn:
                return fn(conn, now)
        except sa.exc.IntegrityError:
            raise errors.AlreadyExistsError("conflicting relation change") from None
        except sa.exc.OperationalError:
            raise errors.UnavailableError("the consent database is unavailable") from None
        except sa.exc.SQLAlchemyError as exc:
            raise _database_error(exc) from None

    def _authority(self, authority: str) -> None:
        designated = self._conf().representation_authority
        if not designated or authority != designated:
            log.warning(
                "refused a relation change by %s: not the representation authority", authority
            )
            raise errors.NotRepresentationAuthorityError()

    def _load(self, conn: Connection, relation_id: str, *, for_update: bool = False) -> Relation:
        if (
            not isinstance(relation_id, str)
            or not 0 < len(relation_id) <= 40
            or "\x00" in relation_id
        ):
            raise errors.NotFoundError("no such relation")
        row = rs.get(conn, relation_id, for_update=for_update)
        if row is None:
            raise errors.NotFoundError("no such relation")
        return _relation(row, self._keys)

    def _values(
        self, relation_id: str, terms: RelationTerms, end_reason: str = ""
    ) -> dict[str, Any]:
        return {
            "kind": terms.kind.value,
            "scopes": " ".join(sorted(s.value for s in terms.scopes)),
            "valid_from_ms": ms(terms.valid_from),
            "valid_until_ms": ms(terms.valid_until) if terms.valid_until else 0,
            "sealed": self._keys.seal(
                relation_id, rs.SEALED_COLUMN, _sealed_json(terms, end_reason)
            ),
        }

    # --- the authority -------------------------------------------------------------------------

    def register(self, authority: str, terms: RelationTerms) -> Relation:
        """Register a relation stated by the representation authority.

        Raises:
            NotRepresentationAuthorityError: ``authority`` is not the designated one.
            InvalidArgumentError (and subclasses): invalid terms (``check_terms``).
        """
        self._authority(authority)

        def apply(conn: Connection, now: datetime) -> Relation:
            checked = check_terms(terms, now=now)
            relation_id = str(uuid6.uuid7())
            values = self._values(relation_id, checked)
            rs.insert(
                conn,
                {
                    "id": relation_id,
                    "representative_tag": self._tag(checked.representative),
                    "represented_tag": self._tag(checked.represented),
                    "authority": authority,
                    "ended_at_ms": 0,
                    "version": 1,
                    "created_at_ms": ms(now),
                    "updated_at_ms": ms(now),
                    **values,
                },
            )
            rs.append_event(conn, relation_id, REGISTERED, ms(now), authority, 1)
            return Relation(relation_id, checked, authority, 1, now, now)

        relation: Relation = self._write(apply)
        log.info("relation %s registered (%s) by %s", relation.id, relation.terms.kind, authority)
        return relation

    def amend(
        self,
        authority: str,
        relation_id: str,
        change: Callable[[RelationTerms], RelationTerms],
    ) -> Relation:
        """Change a relation's validity, majority date, scopes, names or reference:
        ``change`` maps its current terms (read under a lock) to the new ones.

        Raises:
            NotRepresentationAuthorityError: ``authority`` is not the designated one.
            NotFoundError: no such relation.
            FailedPreconditionError: it was ended.
            InvalidArgumentError (and subclasses): the people or kind change, invalid terms.
        """
        self._authority(authority)

        def apply(conn: Connection, now: datetime) -> Relation:
            old = self._load(conn, relation_id, for_update=True)
            checked = check_amendment(old, change(old.terms), now=now)
            version = old.version + 1
            values = {**self._values(old.id, checked), "version": version, "updated_at_ms": ms(now)}
            if not rs.update(conn, old.id, old.version, values):
                raise errors.UnavailableError("the relation changed concurrently; try again")
            rs.append_event(conn, old.id, AMENDED, ms(now), authority, version)
            return Relation(old.id, checked, old.authority, version, old.created_at, now)

        relation: Relation = self._write(apply)
        log.info("relation %s amended by %s", relation.id, authority)
        return relation

    def end(
        self, authority: str, relation_id: str, ended_at: datetime | None = None, reason: str = ""
    ) -> Relation:
        """End a relation at ``ended_at`` (``None``: now).

        Raises:
            NotRepresentationAuthorityError: ``authority`` is not the designated one.
            NotFoundError: no such relation.
            FailedPreconditionError: it was already ended.
            InvalidArgumentError: ``ended_at`` lies before the relation began.
        """
        self._authority(authority)

        def apply(conn: Connection, now: datetime) -> Relation:
            old = self._load(conn, relation_id, for_update=True)
            at = ended_at or now
            why = check_end(old, at, reason)
            version = old.version + 1
            values = {
                "ended_at_ms": ms(at),
                "sealed": self._keys.seal(old.id, rs.SEALED_COLUMN, _sealed_json(old.terms, why)),
                "version": version,
                "updated_at_ms": ms(now),
            }
            if not rs.update(conn, old.id, old.version, values):
                raise errors.UnavailableError("the relation changed concurrently; try again")
            rs.append_event(conn, old.id, ENDED, ms(now), authority, version)
            return Relation(old.id, old.terms, old.authority, version, old.created_at, now, at, why)

        relation: Relation = self._write(apply)
        log.info("relation %s ended by %s", relation.id, authority)
        return relation

    def list_for(self, authority: str, person: CitizenId) -> list[Relation]:
        """Every relation in which ``person`` is either party (for the authority).

        Raises:
            NotRepresentationAuthorityError: ``authority`` is not the designated one.
        """
        self._authority(authority)
        tag = self._tag(person)
        rows = self._read(lambda c: rs.of_person(c, tag, MAX_LIST))
        return [_relation(r, self._keys) for r in rows]

    # --- citizens ------------------------------------------------------------------------------

    def represented_by(self, person: CitizenId, *, include_ended: bool = False) -> list[Relation]:
        """The relations in which ``person`` represents someone (by default only those in
        force now)."""
        rows = self._read(lambda c: rs.of_representative(c, self._tag(person), MAX_LIST))
        now = self._clock()
        found = [_relation(r, self._keys) for r in rows]
        return [r for r in found if include_ended or r.in_force(now)]

    def representatives_of(
        self, person: CitizenId, *, include_ended: bool = False
    ) -> list[Relation]:
        """The relations in which someone represents ``person``."""
        rows = self._read(lambda c: rs.of_represented(c, self._tag(person), MAX_LIST))
        now = self._clock()
        found = [_relation(r, self._keys) for r in rows]
        return [r for r in found if include_ended or r.in_force(now)]

    # --- checks --------------------------------------------------------------------------------

    def grant_in(
        self,
        conn: Connection,
        representative: CitizenId,
        represented: CitizenId,
        scope: Scope,
        now: datetime,
    ) -> RepresentationGrant:
        """``check`` inside the caller's transaction, at ``now``.

        Raises:
            RepresentationMissingError, RepresentationEndedError, RepresentationScopeError.
        """
        rows = rs.between(conn, self._tag(representative), self._tag(represented))
        relations = [_relation(r, self._keys) for r in rows]
        # The tags are keyed hashes: compare the opened ids too (a tag collision must never
        # let one person act for another).
        relations = [
            r
            for r in relations
            if r.terms.representative == representative and r.terms.represented == represented
        ]
        return choose(relations, scope, now).grant()

    def check(
        self, representative: CitizenId, represented: CitizenId, scope: Scope
    ) -> RepresentationGrant:
        """``cdx.representation.RepresentationChecker.check`` at the service's clock."""
        return self._read(  # type: ignore[no-any-return]
            lambda c: self.grant_in(c, representative, represented, scope, self._clock())
        )

    def minor_until_in(self, conn: Connection, person: CitizenId) -> datetime | None:
        """When ``person`` comes of age, as the authority's relations say (``None``: no
        relation says they are a minor), inside the caller's transaction."""
        rows = rs.of_represented(conn, self._tag(person), MAX_LIST)
        return minor_until(
            r for r in (_relation(row, self._keys) for row in rows) if r.terms.represented == person
        )

    # --- keys ----------------------------------------------------------------------------------

    def reseal(self, batch: int = 200) -> int:
        """Reseal under the current data key every relation a retired key sealed; returns how
        many changed (not a relation change: no event).

        Raises:
            KeyStoreError: a relation sealed under a key this service does not hold.
        """
        prefix = f"{PREFIX}.{self._keys.current_id}."
        done = 0
        after = ""
        while True:

            def apply(conn: Connection, now: datetime, after: str = after) -> list[str]:
                rows = rs.sealed_otherwise(conn, prefix, after, batch)
                for row in rows:
                    plain = self._keys.open(row.id, rs.SEALED_COLUMN, row.sealed)
                    rs.replace_sealed(
                        conn, row.id, self._keys.seal(row.id, rs.SEALED_COLUMN, plain)
                    )
                return [row.id for row in rows]

            ids: list[str] = self._write(apply)
            done += len(ids)
            if len(ids) < batch:
                return done
            after = ids[-1]


def _database_error(exc: sa.exc.SQLAlchemyError) -> errors.InternalError:
    # SQLAlchemy's messages carry the statement's parameters: log only the error's type.
    orig = getattr(exc, "orig", None)
    log.error(
        "relation database error: %s (%s)", type(exc).__name__, type(orig).__name__ if orig else "-"
    )
    return errors.InternalError("consent database error")
