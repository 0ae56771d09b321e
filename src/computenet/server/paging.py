"""Paged lists: `limit` and an opaque `cursor` in, a JSON array and a `next` link out.

A list answers a JSON array (as before paging, so existing callers keep
working) and, when there is more, the link to the next page in the headers:
``Link: </api/v1/jobs?limit=100&cursor=…>; rel="next"`` and the bare cursor
in ``X-Next-Cursor``. The SDK and the CLI follow it. A cursor is the sort
key of the last item of the page, base64url-encoded: a page never repeats or
skips items that were there when the first page was read.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from computenet.errors import ValidationError

T = TypeVar("T")

NEXT_HEADER = "X-Next-Cursor"


CURSOR_QUERY = Query(
    None,
    max_length=512,
    description="where the page starts: the X-Next-Cursor (or Link rel=next) of the previous page",
)


def encode_cursor(*key: str) -> str:
    """An opaque cursor for the sort key `key`."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> tuple[str, ...]:
    """The sort key in `cursor` (`parts` strings); `ValidationError` naming `cursor` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        key = None
    if not (isinstance(key, list) and len(key) == parts and all(isinstance(x, str) for x in key)):
        raise ValidationError(
            "not a cursor this list gave out",
            field="cursor",
            hint="pass the X-Next-Cursor of the previous page, or leave it out for the first",
        )
    return tuple(key)


def set_next(request: Request, response: Response, cursor: str | None) -> None:
    """Point `response` at the next page (nothing when `cursor` is None)."""
    if cursor is None:
        return
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    params.append(("cursor", cursor))
    response.headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
    response.headers[NEXT_HEADER] = cursor


def page_by_key(
    items: Sequence[T], key: Callable[[T], str], limit: int, cursor: str | None
) -> tuple[list[T], str | None]:
    """A page of `items` (any order) sorted by the string `key`; returns (page, next cursor).

    For lists that are small and already in memory (a tenant's datasets, the
    tenants): the response is bounded even where the read is not.
    """
    after = decode_cursor(cursor, 1)[0] if cursor else None
    ordered = sorted(items, key=key)
    if after is not None:
        ordered = [x for x in ordered if key(x) > after]
    page = ordered[:limit]
    more = len(ordered) > limit
    return page, encode_cursor(key(page[-1])) if more and page else None
