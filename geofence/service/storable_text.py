"""Text no database can store: NUL (PostgreSQL's text refuses it) and lone UTF-16 surrogates (not
encodable as UTF-8). Refused at the edge with a reason, before any handler or query sees it
(docs/api-errors.md): the same request that SQLite would take must not be a 500 on PostgreSQL."""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate (not valid Unicode text)"
    return None


def url_problem(path: str, query_string: bytes) -> str | None:
    """Why the URL's path or query (percent-decoded) cannot be stored, or None."""
    if "\x00" in path:
        return "the URL path contains a NUL character"
    if b"\x00" in query_string or b"\x00" in unquote_to_bytes(query_string):
        return "the query string contains a NUL character"
    return None


def body_problem(body: bytes, content_type: str) -> str | None:
    """Why the body carries unstorable text, or None (malformed JSON is left to the handler's parser).

    JSON is parsed only when it holds an escape (``\\u``): no other way to write NUL or a surrogate.
    Raises ``RecursionError`` for JSON nested deeper than Python can parse."""
    if b"\x00" in body:
        return "the body contains a NUL byte"
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return "a form field contains a NUL character" if b"\x00" in unquote_to_bytes(body) else None
    if (not kind or kind.endswith("json")) and b"\\u" in body:
        try:
            document = json.loads(body)
        except ValueError:
            return None
        return json_problem(document)
    return None


def json_problem(document: object) -> str | None:
    """The first unstorable string (key or value) in a parsed JSON document, as a reason; or None."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: list[str] = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in strings:
            if (problem := text_problem(text)) is not None:
                return f"a JSON string {problem}: text no database can store"
    return None
