"""Validation of the expectation suite files (``expectations/<gate>/*.json``) before a gate runs.

A suite file is code: its ``query`` runs in the warehouse, so it is checked like code before
anything runs. Only known expectation types with their known keys are accepted, parameters
must be ones the gate provides, and a ``query`` must be one read-only SELECT: no second
statement, nothing that writes (``insert``/``update``/``delete``/``merge`` in a CTE, ``select
into``, ...), no function that reaches outside the transaction (files, other connections,
other sessions, settings). The gate also runs every query in a read-only transaction
(``read_only_url``), so what a text check cannot see still cannot write.

Every problem of a file is reported at once, each naming the key, e.g.
``expectations/marts/x.json: ... expectations[2].kwargs.colum: unknown key for expect_...``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

SCHEMAS = ("raw", "marts")
SEVERITIES = ("critical", "warning", "info")
# what tierflow.quality.gates.suite_parameters provides (a test keeps the two in step)
SUITE_PARAMETERS = ("budget", "account_manager_capacity_hours", "tier_names", "segment_names")

_BETWEEN = ("min_value", "max_value", "strict_min", "strict_max")
# type -> (required kwargs, optional kwargs). GX Core expectations whose kwargs hold no SQL:
# no row_condition, no unexpected_rows_query / comparison queries (a test checks every name
# against GX's own expectation classes).
EXPECTATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # one column, row by row
    "expect_column_values_to_not_be_null": (("column",), ("mostly",)),
    "expect_column_values_to_be_null": (("column",), ("mostly",)),
    "expect_column_values_to_be_unique": (("column",), ("mostly",)),
    "expect_column_values_to_be_in_set": (("column", "value_set"), ("mostly",)),
    "expect_column_values_to_not_be_in_set": (("column", "value_set"), ("mostly",)),
    "expect_column_values_to_be_between": (("column",), (*_BETWEEN, "mostly")),
    "expect_column_values_to_match_regex": (("column", "regex"), ("mostly",)),
    "expect_column_values_to_not_match_regex": (("column", "regex"), ("mostly",)),
    "expect_column_value_lengths_to_be_between": (("column",), (*_BETWEEN, "mostly")),
    "expect_column_values_to_be_of_type": (("column", "type_"), ("mostly",)),
    # one column, aggregated
    "expect_column_to_exist": (("column",), ("column_index",)),
    "expect_column_max_to_be_between": (("column",), _BETWEEN),
    "expect_column_min_to_be_between": (("column",), _BETWEEN),
    "expect_column_mean_to_be_between": (("column",), _BETWEEN),
    "expect_column_median_to_be_between": (("column",), _BETWEEN),
    "expect_column_sum_to_be_between": (("column",), _BETWEEN),
    "expect_column_stdev_to_be_between": (("column",), _BETWEEN),
    "expect_column_unique_value_count_to_be_between": (("column",), _BETWEEN),
    "expect_column_proportion_of_unique_values_to_be_between": (("column",), _BETWEEN),
    "expect_column_distinct_values_to_be_in_set": (("column", "value_set"), ()),
    "expect_column_distinct_values_to_equal_set": (("column", "value_set"), ()),
    "expect_column_distinct_values_to_contain_set": (("column", "value_set"), ()),
    # several columns
    "expect_column_pair_values_a_to_be_greater_than_b": (
        ("column_A", "column_B"), ("or_equal", "ignore_row_if", "mostly")),
    "expect_column_pair_values_to_be_equal": (("column_A", "column_B"), ("ignore_row_if", "mostly")),
    "expect_compound_columns_to_be_unique": (("column_list",), ("ignore_row_if", "mostly")),
    "expect_select_column_values_to_be_unique_within_record": (("column_list",), ("ignore_row_if", "mostly")),
    "expect_multicolumn_sum_to_equal": (("column_list", "sum_total"), ("ignore_row_if", "mostly")),
    # the table
    "expect_table_row_count_to_be_between": ((), _BETWEEN),
    "expect_table_row_count_to_equal": (("value",), ()),
    "expect_table_column_count_to_be_between": ((), ("min_value", "max_value")),
    "expect_table_column_count_to_equal": (("value",), ()),
    "expect_table_columns_to_match_set": (("column_set",), ("exact_match",)),
    "expect_table_columns_to_match_ordered_list": (("column_list",), ()),
}

SUITE_KEYS = ("name", "meta", "expectations")
TARGET_KEYS = ("schema", "table", "query", "as_of_filter", "name")
EXPECTATION_KEYS = ("type", "kwargs", "severity", "meta", "notes")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PLAIN_NAME = re.compile(r"\w+")

# Words that only a statement that writes, locks or leaves the SELECT needs. They are refused
# anywhere outside string literals and quoted identifiers (quote a column so named: "comment").
WRITE_WORDS = frozenset(
    "insert update delete merge truncate drop create alter grant revoke copy call do execute "
    "lock vacuum analyze cluster reindex refresh comment set reset listen notify unlisten prepare "
    "deallocate discard into import load checkpoint begin commit rollback savepoint".split()
)
# Functions that reach outside the read-only transaction: server files, other connections and
# sessions, settings, SQL run from a string, session locks.
OUTSIDE_FUNCTIONS = re.compile(
    r"^(dblink\w*|pg_read_\w+|pg_ls_\w+|pg_stat_file|pg_file_\w+|lo_\w+|pg_(terminate|cancel)_backend"
    r"|pg_reload_conf|pg_rotate_logfile|set_config|(query|cursor)_to_xml\w*|pg_advisory\w*|pg_notify"
    r"|pg_logical_\w+|pg_(create|drop)_\w+|pg_switch_wal|pg_promote|pg_sleep\w*)$"
)
# {new_loads}: the raw gate's subquery of the load ids no raw gate has passed yet (gates.py)
PLACEHOLDERS = ("{schema}", "{new_loads}", ":as_of_date")


class SuiteError(ValueError):
    """A suite file is not valid; the message names the file and every bad key."""


def read_only_url(url: str) -> str:
    """``url`` with every transaction of its sessions read-only (libpq ``options``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join([v for k, v in query if k == "options"] + ["-c default_transaction_read_only=on"])
    query = [(k, v) for k, v in query if k != "options"] + [("options", options)]
    return parts._replace(query=urlencode(query, quote_via=quote)).geturl()  # libpq: %20, not +


# -- the query -----------------------------------------------------------------------------------
def _lex(text: str) -> tuple[str, list[str]]:
    """The SQL with string literals, quoted identifiers and comments blanked out, and the words
    (unquoted identifiers and keywords, lowercased) outside them. Raises ValueError on an
    unterminated literal or comment."""
    code: list[str] = []
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            code.append(" ")
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise ValueError("a /* comment is not closed")
            code.append(" ")
        elif c in "'\"" or (c in "eE" and text.startswith("'", i + 1) and not _after_word(text, i)):
            escapes = c in "eE"
            quote = text[i + 1] if escapes else c
            start = i + 1 if escapes else i
            i += 2 if escapes else 1
            while True:
                if i >= n:
                    raise ValueError("a string literal or quoted identifier is not closed")
                if escapes and text[i] == "\\":
                    i += 2
                elif text[i] == quote:
                    if text.startswith(quote, i + 1):  # '' or "" inside
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
            # a quoted identifier stays in the code (so "pg_read_file"(...) is still a call) but is
            # no word: a column may be called "comment"
            name = text[start + 1:i - 1] if quote == '"' else ""
            code.append(f" {name} " if _PLAIN_NAME.fullmatch(name) else " '' ")
        elif c == "$" and (m := re.match(r"\$([A-Za-z_]\w*)?\$", text[i:])) and not _after_word(text, i):
            tag = m.group(0)
            end = text.find(tag, i + len(tag))
            if end < 0:
                raise ValueError(f"a {tag}-quoted string is not closed")
            i = end + len(tag)
            code.append(" '' ")
        elif c.isdigit():  # a number (1, 0.5, 1e-3): no word in it
            m = re.match(r"[\w.]+([eE][+-]\d+)?", text[i:])
            code.append(m.group(0))
            i += len(m.group(0))
        elif _word_char(c):
            m = re.match(r"[A-Za-z_\u0080-\uffff][\w$\u0080-\uffff]*", text[i:])
            words.append(m.group(0).lower())
            code.append(m.group(0))
            i += len(m.group(0))
        else:
            code.append(c)
            i += 1
    return "".join(code), words


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_" or ord(c) > 127


def _after_word(text: str, i: int) -> bool:
    return i > 0 and (_word_char(text[i - 1]) or text[i - 1] == "$")


def query_problems(query: object) -> list[str]:
    """Why ``query`` is not one read-only SELECT (empty when it is)."""
    if not isinstance(query, str) or not query.strip():
        return ["must be a non-empty string"]
    try:
        code, words = _lex(query)
    except ValueError as exc:
        return [str(exc)]
    problems = []
    if ";" in code.strip().rstrip(";"):
        problems.append("must be a single statement (a ';' ends it before its end)")
    if not words or words[0] not in ("select", "with"):
        problems.append("must be a SELECT (or WITH ... SELECT)")
    writes = sorted(set(words) & WRITE_WORDS)
    if writes:
        problems.append(
            f"must only read: {', '.join(writes)} {'is' if len(writes) == 1 else 'are'} not allowed"
            " (a column of that name must be double-quoted)"
        )
    called = {m.group(1).lower() for m in re.finditer(r"([A-Za-z_][\w$]*)\s*\(", code)}
    outside = sorted(f for f in called if OUTSIDE_FUNCTIONS.match(f))
    if outside:
        problems.append(f"calls {', '.join(outside)}: functions that reach outside a read-only transaction"
                        " are not allowed")
    braces = set(re.findall(r"\{[^}]*\}?", code)) - {p for p in PLACEHOLDERS if p.startswith("{")}
    binds = set(re.findall(r"(?<![:\w]):[A-Za-z_]\w*", code)) - {p for p in PLACEHOLDERS if p.startswith(":")}
    unknown = sorted(braces | binds)
    if unknown:
        problems.append(f"unknown placeholder(s) {', '.join(unknown)}; known: {', '.join(PLACEHOLDERS)}")
    return problems


# -- the file ------------------------------------------------------------------------------------
def _parameters_in(value: object, where: str, problems: list[str]) -> None:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            if value["$PARAMETER"] not in SUITE_PARAMETERS:
                known = ", ".join(SUITE_PARAMETERS)
                problems.append(f"{where}: unknown $PARAMETER {value['$PARAMETER']!r}; known: {known}")
        else:
            problems.append(f"{where}: a value may be a literal or {{\"$PARAMETER\": name}}, not {value!r}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _parameters_in(item, f"{where}[{i}]", problems)


def _unknown(keys: object, known: tuple[str, ...], where: str, problems: list[str], what: str) -> None:
    for key in keys:
        if key not in known:
            problems.append(f"{where}{key}: unknown key{what}; known: {', '.join(known)}")


def _target_problems(target: object, problems: list[str]) -> None:
    where = "meta.tierflow"
    if not isinstance(target, dict):
        problems.append(f"{where}: must be an object naming a schema and a table or query")
        return
    _unknown(target, TARGET_KEYS, f"{where}.", problems, "")
    if target.get("schema") not in SCHEMAS:
        problems.append(f"{where}.schema: must be one of {', '.join(SCHEMAS)}, got {target.get('schema')!r}")
    if ("table" in target) == ("query" in target):
        problems.append(f"{where}: must name exactly one of table or query")
    for key in ("table", "as_of_filter"):
        if key in target and not (isinstance(target[key], str) and _IDENTIFIER.match(target[key])):
            problems.append(f"{where}.{key}: must be a lowercase SQL name, got {target[key]!r}")
    if "as_of_filter" in target and "query" in target:
        problems.append(f"{where}.as_of_filter: only with a table (a query filters on :as_of_date itself)")
    if "query" in target:
        problems += [f"{where}.query: {p}" for p in query_problems(target["query"])]


def _expectation_problems(i: int, exp: object, problems: list[str]) -> None:
    where = f"expectations[{i}]"
    if not isinstance(exp, dict):
        problems.append(f"{where}: must be an object with type and kwargs")
        return
    _unknown(exp, EXPECTATION_KEYS, f"{where}.", problems, "")
    kind = exp.get("type")
    if kind not in EXPECTATIONS:
        problems.append(f"{where}.type: unknown expectation type {kind!r} (the known ones: EXPECTATIONS in"
                        " plugins/tierflow/quality/suites.py)")
        return
    severity = exp.get("severity", "critical")
    if severity not in SEVERITIES:
        problems.append(f"{where}.severity: must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    if "meta" in exp and not isinstance(exp["meta"], dict):
        problems.append(f"{where}.meta: must be an object")
    kwargs = exp.get("kwargs", {})
    if not isinstance(kwargs, dict):
        problems.append(f"{where}.kwargs: must be an object")
        return
    required, optional = EXPECTATIONS[kind]
    _unknown(kwargs, required + optional, f"{where}.kwargs.", problems, f" for {kind}")
    for key in required:
        if key not in kwargs:
            problems.append(f"{where}.kwargs.{key}: missing (required by {kind})")
    for key, value in kwargs.items():
        _parameters_in(value, f"{where}.kwargs.{key}", problems)


def suite_problems(data: object) -> list[str]:
    """Every problem of one parsed suite file, each starting with the key it is about."""
    if not isinstance(data, dict):
        return ["the file must hold one JSON object (a suite)"]
    problems: list[str] = []
    _unknown(data, SUITE_KEYS, "", problems, "")
    if not (isinstance(data.get("name"), str) and data["name"].strip()):
        problems.append("name: must be a non-empty string")
    meta = data.get("meta")
    if not isinstance(meta, dict):
        problems.append("meta: must be an object with meta.tierflow")
    else:
        _unknown(meta, ("tierflow",), "meta.", problems, "")
        _target_problems(meta.get("tierflow"), problems)
    expectations = data.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        problems.append("expectations: must be a non-empty list")
    else:
        for i, exp in enumerate(expectations):
            _expectation_problems(i, exp, problems)
    return problems


def validate_suite(path: Path, data: object) -> None:
    """Raise SuiteError naming ``path`` and every problem of the suite it holds."""
    problems = suite_problems(data)
    if problems:
        raise SuiteError(f"{path}: invalid expectation suite:\n  " + "\n  ".join(problems))
