"""What a cached result depends on, and what a write changes, as tag texts.

Tag texts (hashed into keys by keys.py):

    T|t          every entry that read table t; bumped by table-level writes
                 (bulk UPDATE/DELETE, text(), Core, unknown writes, invalidate(M))
    R|t|pk       row pk of table t: entries holding that row, and a `get` of
                 that pk (so a cached miss sees the INSERT)
    A|t          entries whose set of t rows a row write may change (lists,
                 counts, exists, joins, subqueries); bumped by every row write to t
    P|t|c|v      entries of a single-table query WHERE c = v (or c IN (...)):
                 bumped by a row write whose old or new value of c is v
    Q|t          every P-tagged entry of t; bumped by row writes with unknown values
    E            every entry (invalidate_all / flush)

A row write to t bumps R, A, P for each loaded column's old and new value (or Q
when values are unknown) and gen(t).  Eager loads: every instance in a result
(relationships loaded in its __dict__, whichever loader put them there) adds R
and T of its table; a loaded one-to-many collection adds P|child|fk|parent
value, so a new child row refreshes the parent's entry; many-to-many adds T and
A of the secondary table.  Predicates are used only on Integer, String (not
Enum) and Boolean columns, where the bound value and the row value normalise
to the same text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.orm import RelationshipProperty
from sqlalchemy.orm.interfaces import MANYTOMANY, ONETOMANY
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import (BinaryExpression, BindParameter, BooleanClauseList,
                                     ColumnClause, False_, TextClause, True_)
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Exists, TableClause

from .._compat import iter_mappers

# Functions whose result depends only on their arguments and the rows read.
SAFE_FUNCTIONS = frozenset("""
count sum avg min max lower upper length char_length octet_length abs coalesce nullif
greatest least round trunc floor ceil ceiling concat concat_ws substr substring trim
btrim ltrim rtrim replace position strpos left right lpad rpad md5 array_agg string_agg
bool_and bool_or every json_agg jsonb_agg json_build_object jsonb_build_object
row_number rank dense_rank cast mod power sqrt sign reverse initcap split_part
""".split())

SUPPORTED_TYPES = (sa.Integer, sa.String, sa.Boolean)


def norm(column: Any, value: Any) -> Optional[str]:
    """Text of a value for a predicate tag on column, or None if not supported."""
    ctype = getattr(column, "type", None)
    if ctype is None or isinstance(ctype, sa.Enum) or not isinstance(ctype, SUPPORTED_TYPES):
        return None
    if value is None:
        return "\0null"
    try:
        if isinstance(ctype, sa.Boolean):
            return "1" if value else "0"
        if isinstance(ctype, sa.Integer):
            if isinstance(value, float) and not value.is_integer():
                return None
            return str(int(value))
        return value if isinstance(value, str) else None
    except (TypeError, ValueError):
        return None


def row_text(values: Iterable[Any]) -> str:
    return ":".join(str(v) for v in values)


_mapper_epoch = [0]     # +1 whenever a mapper is configured (rebuild the Registry)


@event.listens_for(Mapper, "mapper_configured")
def _mapper_configured(mapper: Any, cls: Any) -> None:
    _mapper_epoch[0] += 1


class Registry:
    """Tables <-> mappers, from every configured SQLAlchemy registry (rebuilt when new
    mappers appear)."""

    def __init__(self) -> None:
        self.count = -1
        self.by_table: Dict[str, List[Any]] = {}
        self.closure: Dict[str, Tuple[str, ...]] = {}

    def refresh(self) -> None:
        if self.count == _mapper_epoch[0]:
            return
        epoch = _mapper_epoch[0]
        mappers = list(iter_mappers())
        by_table: Dict[str, List[Any]] = {}
        for m in mappers:
            for t in m.tables:
                by_table.setdefault(t.name, []).append(m)
        self.by_table, self.count, self.closure = by_table, epoch, {}

    def mappers_of(self, table: str) -> List[Any]:
        return self.by_table.get(table, [])

    def reachable(self, table: str) -> Tuple[str, ...]:
        """Tables an eager load from table's mappers may read (relationships, 2 levels)."""
        got = self.closure.get(table)
        if got is not None:
            return got
        seen = {table}
        frontier = [table]
        for _ in range(2):
            nxt = []
            for name in frontier:
                for m in self.mappers_of(name):
                    for rel in m.relationships:
                        names = [t.name for t in rel.mapper.tables]
                        if rel.secondary is not None and hasattr(rel.secondary, "name"):
                            names.append(rel.secondary.name)
                        for n in names:
                            if n not in seen:
                                seen.add(n)
                                nxt.append(n)
            frontier = nxt
        self.closure[table] = got = tuple(sorted(seen))
        return got


class Plan:
    """What a statement's structure says (cached per SQLAlchemy cache key): kind, tables,
    and how to build its tags from the parameter values of one execution."""

    __slots__ = ("kind", "tables", "snapshot_tables", "static", "get_table", "get_values",
                 "pred_table", "pred_column", "pred_values", "pred_in")

    def __init__(self, kind: str, tables: List[str]):
        self.kind = kind
        self.tables = tables
        self.snapshot_tables: Tuple[str, ...] = ()
        self.static: Set[str] = set()
        self.get_table: Optional[str] = None
        self.get_values: List[Tuple[str, Any]] = []   # ("bind", index) | ("const", value)
        self.pred_table: Optional[str] = None
        self.pred_column: Any = None
        self.pred_values: Tuple[str, Any] = ("const", None)
        self.pred_in = False

    def tags(self, values: List[Any]) -> Set[str]:
        """Tags of one execution; values = the cache key's bindparams' values, in order."""
        out = set(self.static)

        def value(spec: Tuple[str, Any]) -> Any:
            return values[spec[1]] if spec[0] == "bind" else spec[1]
        if self.get_table is not None:
            out.add(f"R|{self.get_table}|{row_text(value(v) for v in self.get_values)}")
        if self.pred_table is not None:
            raw = value(self.pred_values)
            items = list(raw) if self.pred_in and isinstance(raw, (list, tuple, set)) else [raw]
            texts = [norm(self.pred_column, v) for v in items] if items else [None]
            if all(t is not None for t in texts) and (self.pred_in or len(items) == 1):
                out.update(f"P|{self.pred_table}|{self.pred_column.name}|{t}" for t in texts)
                out.add(f"Q|{self.pred_table}")
            else:
                out.add(f"A|{self.pred_table}")   # not a usable value: any row write
        return out


def _conjuncts(clause: Any) -> List[Any]:
    if clause is None:
        return []
    if isinstance(clause, BooleanClauseList) and clause.operator is operators.and_:
        out = []
        for c in clause.clauses:
            out.extend(_conjuncts(c))
        return out
    return [clause]


def _supported(column: Any) -> bool:
    ctype = getattr(column, "type", None)
    return isinstance(ctype, SUPPORTED_TYPES) and not isinstance(ctype, sa.Enum)


def plan(statement: Any, bindparams: List[BindParameter], registry: Registry
         ) -> Optional[Plan]:
    """The Plan of an ORM SELECT, or None: never cache it (not a SELECT, FOR UPDATE,
    text, literal SQL, functions not known to be pure, no table)."""
    if not isinstance(statement, sa.sql.Select):
        return None
    if getattr(statement, "_for_update_arg", None) is not None:
        return None
    tables: List[str] = []
    for el in visitors.iterate(statement):
        if isinstance(el, TextClause):
            return None
        if isinstance(el, FunctionElement):
            if getattr(el, "name", "").lower() not in SAFE_FUNCTIONS:
                return None
        elif isinstance(el, TableClause):
            if el.name not in tables:
                tables.append(el.name)
        elif isinstance(el, ColumnClause) and el.is_literal and el.name != "*":
            return None
        if getattr(el, "_for_update_arg", None) is not None:
            return None
    if not tables:
        return None
    registry.refresh()
    cols = list(statement._raw_columns)
    if any(isinstance(c, Exists) for c in cols):
        kind = "exists"
    elif any(isinstance(c, FunctionElement) and c.name.lower() == "count" for c in cols):
        kind = "count"
    else:
        kind = "fetch"
    out = Plan(kind, tables)
    index = {id(b): i for i, b in enumerate(bindparams)}

    def spec(right: Any) -> Optional[Tuple[str, Any]]:
        if isinstance(right, (True_, False_)):
            return ("const", isinstance(right, True_))
        if isinstance(right, BindParameter) and id(right) in index:
            return ("bind", index[id(right)])
        return None
    covered = None
    if len(tables) == 1:
        table_name = tables[0]
        eq: Dict[str, Tuple[Any, Tuple[str, Any]]] = {}
        ins: Dict[str, Tuple[Any, Tuple[str, Any]]] = {}
        for c in _conjuncts(statement.whereclause):
            if not isinstance(c, BinaryExpression):
                continue
            left, right_spec = c.left, spec(c.right)
            if right_spec is None or \
                    getattr(getattr(left, "table", None), "name", None) != table_name:
                continue
            expanding = isinstance(c.right, BindParameter) and c.right.expanding
            if c.operator is operators.eq and not expanding:
                eq.setdefault(left.name, (left, right_spec))
            elif c.operator is operators.in_op and expanding:
                ins.setdefault(left.name, (left, right_spec))
        pk_cols = None
        for m in registry.mappers_of(table_name):
            for t in m.tables:
                if t.name == table_name:
                    pk_cols = [c.name for c in t.primary_key.columns]
        if pk_cols and kind == "fetch" and set(pk_cols) <= set(eq) and \
                getattr(statement, "_limit_clause", None) is None:
            out.kind = "get"
            out.get_table = table_name
            out.get_values = [eq[c][1] for c in pk_cols]
            covered = table_name
        else:
            for name, (col, vspec) in list(eq.items()) + list(ins.items()):
                if _supported(col):
                    out.pred_table, out.pred_column, out.pred_values = table_name, col, vspec
                    out.pred_in = name in ins and name not in eq
                    covered = table_name
                    break
    for t in tables:
        out.static.add(f"T|{t}")
        if t != covered:
            out.static.add(f"A|{t}")
    snap: Set[str] = set()
    for t in tables:
        snap.update(registry.reachable(t))
    out.snapshot_tables = tuple(sorted(snap))
    return out


def base_table(mapper: Any) -> str:
    return mapper.base_mapper.local_table.name


def result_tags(rows: Iterable[Any]) -> Tuple[Set[str], Set[str]]:
    """(tags, tables) of every mapped instance in rows and what they have loaded."""
    tags: Set[str] = set()
    tables: Set[str] = set()
    seen: Set[int] = set()
    stack: List[Any] = []
    for row in rows:
        for value in (row if isinstance(row, tuple) or hasattr(row, "_fields") else (row,)):
            stack.append(value)
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        state = sa_inspect(obj, raiseerr=False)
        if state is None or not hasattr(state, "mapper") or not hasattr(state, "dict"):
            continue
        seen.add(id(obj))
        mapper = state.mapper
        ident = state.identity if state.key is not None else None
        if ident is not None:
            tags.add(f"R|{base_table(mapper)}|{row_text(ident)}")
        for t in mapper.tables:
            tags.add(f"T|{t.name}")
            tables.add(t.name)
        loaded = state.dict
        for rel in mapper.relationships:
            if rel.key not in loaded:
                continue
            value = loaded[rel.key]
            target_tables = [t.name for t in rel.mapper.tables]
            for name in target_tables:
                tags.add(f"T|{name}")
                tables.add(name)
            if rel.direction is ONETOMANY:
                _collection_tags(rel, mapper, loaded, tags)
            elif rel.direction is MANYTOMANY and rel.secondary is not None:
                name = getattr(rel.secondary, "name", None)
                if name is None:
                    tags.add("E")
                else:
                    tags.update({f"T|{name}", f"A|{name}"})
                    tables.add(name)
                for name in target_tables:
                    tags.add(f"A|{name}")
            if value is None:
                continue
            if isinstance(value, (list, set, tuple)) or hasattr(value, "__iter__") and \
                    not hasattr(value, "_sa_instance_state"):
                stack.extend(list(value))
            else:
                stack.append(value)
    return tags, tables


def _collection_tags(rel: RelationshipProperty, mapper: Any, loaded: Mapping[str, Any],
                     tags: Set[str]) -> None:
    """One-to-many: children are the rows of child WHERE fk = parent value."""
    pairs = list(rel.local_remote_pairs)
    if len(pairs) == 1:
        local, remote = pairs[0]
        try:
            prop = mapper.get_property_by_column(local)
        except Exception:
            prop = None
        value = loaded.get(prop.key) if prop is not None else None
        text = norm(remote, value) if prop is not None and prop.key in loaded else None
        if text is not None and value is not None:
            tags.add(f"P|{remote.table.name}|{remote.name}|{text}")
            tags.add(f"Q|{remote.table.name}")
            return
    for t in rel.mapper.tables:
        tags.add(f"A|{t.name}")


def row_write_tags(mapper: Any, state: Any, kind: str) -> Tuple[Dict[str, Set[str]], bool]:
    """Tags a flushed INSERT/UPDATE/DELETE of one instance bumps, per table, from its
    history (old and new values).  Returns ({table: tags}, values_known)."""
    out: Dict[str, Set[str]] = {}
    base = base_table(mapper)
    ident = mapper.primary_key_from_instance(state.obj()) if state.obj() is not None else None
    if state.key is not None:
        ident = state.key[1]
    for t in mapper.tables:
        out.setdefault(t.name, set()).add(f"A|{t.name}")
    if ident is not None and all(v is not None for v in ident):
        out.setdefault(base, set()).add(f"R|{base}|{row_text(ident)}")
    known = True
    loaded = state.dict
    for prop in mapper.column_attrs:
        for col in prop.columns:
            table = getattr(col, "table", None)
            if table is None or not hasattr(table, "name") or table not in mapper.tables:
                continue
            tset = out.setdefault(table.name, set())
            if prop.key not in loaded:
                # unknown value (expired, deferred, server default): every predicate
                # entry of the table may hold or count this row
                if isinstance(col.type, SUPPORTED_TYPES) and not isinstance(col.type, sa.Enum):
                    tset.add(f"Q|{table.name}")
                continue
            hist = state.attrs[prop.key].history if kind == "update" else None
            values = []
            if hist is not None:
                values = list(hist.added or ()) + list(hist.deleted or ()) + \
                    list(hist.unchanged or ())
            else:
                values = [loaded.get(prop.key)]
            for v in values:
                text = norm(col, v)
                if text is not None:
                    tset.add(f"P|{table.name}|{col.name}|{text}")
                elif isinstance(col.type, SUPPORTED_TYPES) and not isinstance(col.type, sa.Enum):
                    tset.add(f"Q|{table.name}")
    if ident is None or any(v is None for v in (ident or ())):
        known = False
    return out, known
