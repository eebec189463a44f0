"""The API's page-numbered lists: ninja's PageNumberPagination with the page number bounded, so
that a page far beyond any list is refused in words (400) instead of overflowing the database's
offset, and the schema says so."""

from ninja import Field, Schema
from ninja.pagination import PageNumberPagination

MAX_PAGE = 2**31 - 1  # times the largest page (1,000) stays far inside a 64-bit offset


class BoundedPageNumberPagination(PageNumberPagination):
    class Input(Schema):
        page: int = Field(1, ge=1, le=MAX_PAGE)
        page_size: int | None = Field(None, ge=1, description="At most the operation's largest page; more is cut.")
