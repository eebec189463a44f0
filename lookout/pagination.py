"""NextToken/MaxResults pagination over querysets, by keyset: a token is the position after the
last item of a page, so items added or removed meanwhile never shift later pages."""

import base64
import binascii
import json

from lookout.errors import ValidationException

DEFAULT_PAGE_SIZE = 100


def _encode(position) -> str:
    # Standard base64: the model's PaginationToken pattern allows [a-zA-Z0-9/+=] only.
    return base64.b64encode(json.dumps(position).encode()).decode()


def _decode(token: str):
    try:
        return json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError):
        raise ValidationException("The NextToken is not valid: pass the NextToken of a previous answer.") from None


def paginate(queryset, *, key: str, next_token: str | None, max_results: int | None):
    """(items, next token or None) for `queryset`, ordered by the unique field `key`."""
    size = max_results or DEFAULT_PAGE_SIZE
    items = queryset.order_by(key)
    if next_token:
        items = items.filter(**{f"{key}__gt": _decode(next_token)})
    page = list(items[: size + 1])
    if len(page) > size:
        page = page[:size]
        return page, _encode(getattr(page[-1], key))
    return page, None
