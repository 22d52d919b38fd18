"""The one error pagination raises."""

from __future__ import annotations


class PaginationError(Exception):
    """Pagination cannot go on safely; the message says why and what to change."""
