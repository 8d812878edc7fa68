"""SQL mallard did not write (`[features] sql`, `[source] sql`, `mallard sql`) runs here, on DuckDB
connections that can only read.

Two locks, because each alone leaks (measured on duckdb 2.0.1):
- only reading statements run: every statement must be a SELECT (DESCRIBE, SHOW, SUMMARIZE,
  VALUES, FROM-first and CTEs are SELECTs too) or an EXPLAIN of one. DuckDB files `COPY FROM
  DATABASE` and `IMPORT DATABASE` under PRAGMA and CHECKPOINT under CALL, so those kinds are
  refused too; `allowed_directories` alone would also let `COPY … TO` and `EXPORT DATABASE`
  write into the allowed folder.
- the connection itself cannot reach out: no external access (files, extensions, replacement
  scans of Python variables) beyond the allowed folders, no extension autoloading, no persistent
  secrets, and the configuration locked so no statement can undo any of it.

Besides `mallard.warehouse`, this is the only module that runs DuckDB; `tasks.features` stays a
plain function of frames, and `warehouse.sandbox` opens the warehouse file with these locks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from mallard.core.errors import InputError, MallardError, WarehouseError

_LOCKS = (
    "SET enable_external_access = false",
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET allow_extension_repositories = 'forbidden'",
    "SET allow_persistent_secrets = false",
    "SET lock_configuration = true",  # last: from here on no SET, RESET or PRAGMA changes them
)
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALYZE\s+)?(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_FILE = re.compile(r'Cannot access (?:file|directory) "(?P<path>[^"]*)"')
_SETTING = re.compile(r'Cannot change configuration option "(?P<name>[^"]*)"')
_WRITE = re.compile(r'statement of type "(?P<kind>[^"]*)" on database "[^"]*" which is attached in')
_ACTIONS = {
    "INSERT": "insert rows",
    "UPDATE": "update rows",
    "DELETE": "delete rows",
    "MERGE_INTO": "merge rows",
    "CREATE": "create a table, view, macro or secret",
    "CREATE_FUNC": "create a function",
    "DROP": "drop an object",
    "ALTER": "alter a table",
    "COPY": "copy data to or from a file",
    "COPY_DATABASE": "copy a database",
    "EXPORT": "export the database",
    "ATTACH": "attach a database",
    "DETACH": "detach a database",
    "SET": "change a setting",
    "VARIABLE_SET": "set a variable",
    "LOAD": "install or load an extension",
    "EXTENSION": "install or load an extension",
    "PRAGMA": "run a PRAGMA (some import databases or change settings)",
    "CALL": "CALL a procedure (some checkpoint the file)",
    "VACUUM": "vacuum or analyze the database",
    "TRANSACTION": "control a transaction",
    "PREPARE": "prepare a statement",
    "EXECUTE": "execute a prepared statement",
    "MULTI": "run a statement that expands to several (e.g. PIVOT without an IN list)",
}


@dataclass(frozen=True)
class Voice:
    """How refusals and failures read for one kind of caller."""

    prefix: str  # "" or "[features.sql] ": the spec key, when a spec holds the SQL
    rule: str  # why a refusal: "warehouse queries are read-only"
    error: type[MallardError] = InputError


ANALYST = Voice("", "warehouse queries are read-only", WarehouseError)
FEATURES = Voice("[features.sql] ", "spec SQL may only read the table `source`")
SOURCE = Voice("[source.sql] ", "spec SQL may only read the spec's folder and the warehouse")


def lock_down(
    con: duckdb.DuckDBPyConnection,
    allowed_directories: Sequence[Path] = (),
    allowed_paths: Sequence[Path] = (),
) -> duckdb.DuckDBPyConnection:
    """Make `con` unable to reach anything but its own databases and the allowed files/folders
    (read there, never written: `read_only_sql` runs no writing statement). Register frames
    before or after; both work. Irreversible for this connection."""
    folders = [f"{Path(d).resolve()}/" for d in allowed_directories]  # "/" so no sibling prefix
    files = [str(Path(p).resolve()) for p in allowed_paths]
    if folders:
        con.execute("SET allowed_directories = $v", {"v": folders})
    if files:
        con.execute("SET allowed_paths = $v", {"v": files})
    for statement in _LOCKS:
        con.execute(statement)
    return con


def refusal(con: duckdb.DuckDBPyConnection, sql: str) -> str | None:
    """What the first statement of `sql` that is not a read would do ("delete rows"), or None.
    Raises duckdb.ParserException for SQL that does not parse."""
    try:
        kinds = [(s.type.name, s.query) for s in con.extract_statements(sql)]
    except ValueError:  # a statement kind this duckdb's Python enum does not know
        return "run a statement mallard does not know to be a read"
    for kind, text in kinds:
        if kind == "EXPLAIN":
            match = _EXPLAIN.match(text)
            inner = refusal(con, match["rest"]) if match else "explain a statement"
            if inner is not None:
                return inner
        elif kind != "SELECT":
            return _ACTIONS.get(kind, f"run a {kind} statement")
    return None


def read_only_relation(
    con: duckdb.DuckDBPyConnection, sql: str, voice: Voice
) -> duckdb.DuckDBPyRelation:
    """`sql` as a relation on a locked-down `con`, after refusing, in one line naming what it
    tried, any statement that is not a read. Fetching it may still raise duckdb.Error (e.g. a
    file outside the allowed folders): translate that with `failure_message`."""
    try:
        action = refusal(con, sql)
        empty = not sql.strip() or not con.extract_statements(sql)
    except duckdb.Error as exc:
        raise voice.error(f"{voice.prefix}query failed: {one_line(exc)}") from None
    if action is not None:
        raise voice.error(f"{voice.prefix}the query tried to {action}: {voice.rule}")
    if empty:
        raise voice.error(f"{voice.prefix}the query is empty: give a SELECT statement")
    try:
        relation = con.sql(sql)
    except duckdb.Error as exc:
        raise voice.error(failure_message(exc, voice)) from None
    if relation is None:  # not reached for SELECTs; kept so no statement slips through quietly
        raise voice.error(f"{voice.prefix}the query returns no rows: give a SELECT statement")
    return relation


def read_only_sql(con: duckdb.DuckDBPyConnection, sql: str, voice: Voice) -> pl.DataFrame:
    """The result of `sql` (its last statement) on a locked-down `con`, or one line naming what
    the query tried to do."""
    relation = read_only_relation(con, sql, voice)
    try:
        return relation.pl()
    except duckdb.Error as exc:
        raise voice.error(failure_message(exc, voice)) from None


ROW_KEY = "__mallard_row"  # the source row's position, beside its columns


def sql_over_frame(
    frame: pl.DataFrame, sql: str, name: str = "source", *, keep_key: bool = False
) -> pl.DataFrame:
    """Run `sql` in an in-memory DuckDB where `frame` is the table `name` (features.sql); the
    connection sees nothing else and writes nowhere.

    The rows come back in the frame's order: DuckDB's window operator returns them grouped by
    partition, and the caller pairs result rows with input rows (row_index, a scored file's
    keys). The table carries ROW_KEY, which `SELECT *` keeps: the result is sorted by it and it
    is dropped. A query that reorders rows (a window function, ORDER BY) without keeping it is
    refused: its rows could not be paired with their input rows. With `keep_key` the sorted
    result keeps ROW_KEY (the source row's position in `frame`) when the query kept it, for a
    caller whose query may drop rows."""
    if ROW_KEY in frame.columns:
        raise FEATURES.error(f"{FEATURES.prefix}the column name {ROW_KEY} is mallard's own")
    con = duckdb.connect(":memory:")
    try:
        con.register(name, frame.with_row_index(ROW_KEY))
        result = read_only_sql(lock_down(con), sql, FEATURES)
    finally:
        con.close()
    if keeps_row_key(result.columns, sql):
        result = result.sort(ROW_KEY, maintain_order=True)
        return result if keep_key else result.drop(ROW_KEY)
    return result


def keeps_row_key(columns: Sequence[str], sql: str) -> bool:
    """Whether a features.sql result with `columns` kept ROW_KEY (so it can be sorted back into
    input order); a query that reorders rows (a window function, ORDER BY) without it is refused:
    its rows could not be paired with their input rows."""
    if ROW_KEY in columns:
        return True
    if reorders_rows(sql):
        raise FEATURES.error(
            f"{FEATURES.prefix}the query reorders rows (a window function or ORDER BY) and does "
            f"not keep the source's row key: select * (or {ROW_KEY}) so each result row can be "
            "paired with its input row"
        )
    return False


def reorders_rows(sql: str) -> bool:
    """Whether the parsed query (DuckDB's own parser, nothing runs) has a window function or an
    ORDER BY anywhere."""
    con = duckdb.connect(":memory:")
    try:
        tree = con.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchall()[0][0]
    finally:
        con.close()
    found = False

    def visit(node: object) -> None:
        nonlocal found
        if isinstance(node, dict):
            ordered = any(
                isinstance(m, dict) and m.get("type") == "ORDER_MODIFIER" and m.get("orders")
                for m in node.get("modifiers", ())
            )
            found = found or node.get("class") == "WINDOW" or ordered
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(json.loads(tree))
    return found


def one_line(exc: BaseException) -> str:
    """DuckDB's message without its `LINE n:` excerpt and caret, on one line."""
    text = str(exc).split("\nLINE ", 1)[0]
    return " ".join(text.split()) or type(exc).__name__


def failure_message(exc: duckdb.Error, voice: Voice) -> str:
    """One line for a DuckDB error of untrusted SQL: what it tried (and the rule), else why it
    failed."""
    message = str(exc)
    if isinstance(exc, duckdb.PermissionException):
        found = _FILE.search(message)
        what = f'read "{found["path"]}"' if found else "reach outside the database"
        return f"{voice.prefix}the query tried to {what}: {voice.rule}"
    if found := _SETTING.search(message):
        return f"{voice.prefix}the query tried to change setting {found['name']}: {voice.rule}"
    if found := _WRITE.search(message):
        action = _ACTIONS.get(found["kind"], f"run a {found['kind']} statement")
        return f"{voice.prefix}the query tried to {action}: {voice.rule}"
    return f"{voice.prefix}query failed: {one_line(exc)}"
