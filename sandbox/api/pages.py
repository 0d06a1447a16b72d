"""Cursor pagination of list endpoints: ``limit`` and ``cursor`` in, the page as the JSON array
and the next page's cursor in the ``X-Next-Cursor`` header (absent on the last page)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

NEXT_CURSOR_HEADER = "X-Next-Cursor"
CURSOR = Annotated[
    str | None,
    Query(max_length=512, description="The X-Next-Cursor header of the previous page (omit for the first)."),
]
PAGED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page, newest first.",
        "headers": {
            NEXT_CURSOR_HEADER: {
                "description": "Cursor of the next page; absent on the last page.",
                "schema": {"type": "string"},
            }
        },
    }
}
