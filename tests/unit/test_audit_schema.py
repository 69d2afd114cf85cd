"""The audit schema has one source, ``audit.store``'s tables: the rows the store returns and the
entries the sequencer writes agree with them (a column added to one place only fails here)."""

from __future__ import annotations

import dataclasses
import typing

import sqlalchemy as sa

from audit import store
from audit.sequencer import PreparedEntry

_PY_TYPES: dict[type[sa.types.TypeEngine[typing.Any]], type] = {
    sa.BigInteger: int,
    sa.Integer: int,
    sa.SmallInteger: int,
    sa.String: str,
    sa.Text: str,
    sa.LargeBinary: bytes,
}


def _field_types(cls: type) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _column_type(column: sa.Column[typing.Any]) -> type:
    for sa_type, py_type in _PY_TYPES.items():
        if isinstance(column.type, sa_type):
            return py_type
    raise AssertionError(f"no Python type known for {column.type!r}")


def test_entry_rows_are_the_leaves_table() -> None:
    columns = [c.name for c in store.leaves.columns]
    assert [f.name for f in dataclasses.fields(store.EntryRow)] == columns
    types = _field_types(store.EntryRow)
    for column in store.leaves.columns:
        assert types[column.name] is _column_type(column), column.name


def test_prepared_entries_carry_every_column_the_sequencer_writes() -> None:
    """A leaf row is the entry's fields in column order between ``idx`` (assigned by the
    sequencer) and ``integrated_at_ms`` (its commit time)."""
    columns = [c.name for c in store.leaves.columns]
    assert columns[0] == "idx" and columns[-1] == "integrated_at_ms"
    types = _field_types(PreparedEntry)
    for column in store.leaves.columns[1:-1]:
        assert column.name in types, f"PreparedEntry lacks {column.name}"
        assert types[column.name] is _column_type(column), column.name
    # What PreparedEntry holds besides leaf columns is written to the other tables.
    extra = set(types) - set(columns)
    assert extra == {
        "epoch",
        "opening",
        "sealed_opening",
        "subject_mac",
        "unseal_target",
        "copy_subjects_from",
    }
    for name, table in (("epoch", store.openings), ("epoch", store.subject_index)):
        assert name in table.c


def test_other_rows_are_their_tables() -> None:
    # (row class, table, fields computed beside the columns, columns a row does not carry)
    pairs = [
        (store.CheckpointRow, store.checkpoints, {"cosignature_lines"}, set()),
        (store.RefusedRow, store.refused, set(), set()),
        (store.TreeState, store.tree_state, set(), {"id", "updated_at_ms"}),
    ]
    for cls, table, derived, unread in pairs:
        fields = [f.name for f in dataclasses.fields(cls) if f.name not in derived]
        assert fields == [c.name for c in table.columns if c.name not in unread], cls.__name__


def test_every_append_only_table_exists() -> None:
    assert set(store.APPEND_ONLY_TABLES) <= set(store.metadata.tables)
