"""The dashboard's listings: searched, sorted and cut into pages from the query string, or
written out whole as CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from aiohttp import web

Row = TypeVar("Row")

PER_PAGE = 25
MAX_PER_PAGE = 500


@dataclass(frozen=True)
class Column(Generic[Row]):
    key: str
    title: str
    value: Callable[[Row], Any]  # what sorting and CSV use
    numeric: bool = False
    as_text: Callable[[Any], str] | None = None  # how CSV writes the value, when not str()


@dataclass(frozen=True)
class Listing(Generic[Row]):
    """One page of rows, and what the page's links need to move around."""

    rows: Sequence[Row]
    matched: Sequence[Row]  # every row the search found, in order (what CSV exports)
    total: int  # rows that match the search
    query: str
    sort: str
    descending: bool
    page: int
    pages: int
    per_page: int
    params: dict[str, str]  # the query string without sort, order and page

    def link(self, **changes: Any) -> str:
        current = {
            **self.params,
            "q": self.query,
            "sort": self.sort,
            "order": "desc" if self.descending else "asc",
            "page": str(self.page),
            "per_page": str(self.per_page),
        }
        current.update({key: str(value) for key, value in changes.items()})
        if current.get("per_page") == str(PER_PAGE):
            current.pop("per_page")
        return "?" + urlencode({k: v for k, v in current.items() if v})

    def sort_link(self, key: str) -> str:
        descending = not self.descending if key == self.sort else False
        return self.link(sort=key, order="desc" if descending else "asc", page=1)

    def csv_link(self) -> str:
        return self.link(format="csv", page="")

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        return min(self.total, self.page * self.per_page)


def _positive(text: str | None, default: int, most: int) -> int:
    try:
        value = int(text or default)
    except ValueError:
        return default
    return max(1, min(most, value))


def listing(
    request: web.Request,
    rows: Sequence[Row],
    columns: Sequence[Column[Row]],
    *,
    searched: Callable[[Row], str],
    default_sort: str,
    keep: Sequence[str] = (),
) -> Listing[Row]:
    """The rows the request's `q` finds (a case-insensitive substring of `searched`), sorted by
    its `sort` column and `order`, its `page` of `per_page`."""
    query = request.query.get("q", "").strip()
    if query:
        needle = query.lower()
        rows = [row for row in rows if needle in searched(row).lower()]
    by_key = {column.key: column for column in columns}
    sort = request.query.get("sort", default_sort)
    if sort not in by_key:
        sort = default_sort
    descending = request.query.get("order") == "desc"
    column = by_key[sort]
    present = [row for row in rows if column.value(row) is not None]
    absent = [row for row in rows if column.value(row) is None]
    ordered = sorted(present, key=lambda row: _sort_key(column.value(row)), reverse=descending)
    ordered += absent  # rows without a value last, whichever the order
    per_page = _positive(request.query.get("per_page"), PER_PAGE, MAX_PER_PAGE)
    pages = max(1, math.ceil(len(ordered) / per_page))
    page = min(_positive(request.query.get("page"), 1, 1_000_000), pages)
    start = (page - 1) * per_page
    return Listing(
        rows=ordered[start : start + per_page],
        matched=ordered,
        total=len(ordered),
        query=query,
        sort=sort,
        descending=descending,
        page=page,
        pages=pages,
        per_page=per_page,
        params={name: request.query[name] for name in keep if name in request.query},
    )


def _sort_key(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def csv_response(
    rows: Sequence[Row], columns: Sequence[Column[Row]], filename: str
) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([column.key for column in columns])
    for row in rows:
        writer.writerow([_csv_value(column, column.value(row)) for column in columns])
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _csv_value(column: Column[Any], value: Any) -> str:
    if value is None:
        return ""
    if column.as_text is not None:
        return column.as_text(value)
    if isinstance(value, tuple | list):
        return " ".join(str(v) for v in value)
    text = str(value)
    # A cell that starts like a formula is not run by a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
