"""Lean routes: a hot route keeps its documented schemas but skips marshmallow per request.

Parsing a gate's tap through webargs and dumping the answer through marshmallow cost more
than the rest of the request's edge together (docs/performance.md). A lean route is
documented exactly as ``@blp.arguments``/``@blp.response`` would document it
(:func:`documented`), checks well-formed input by hand and, for anything else, lets the
same schema and parser decide (:func:`parse_arguments`), so bad input gets the very 422
problem it always did. Its answer must already have the response schema's shape (test it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import TypeVar

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint

F = TypeVar("F", bound=Callable[..., Any])


def documented(*decorators: Callable[[Any], Any]) -> Callable[[F], F]:
    """The OpenAPI documentation of these flask-smorest decorators, without their wrappers."""

    def decorator(func: F) -> F:
        wrapped: Any = func
        for apply in reversed(decorators):
            wrapped = apply(wrapped)
        func._apidoc = wrapped._apidoc  # type: ignore[attr-defined]
        return func

    return decorator


def parse_arguments(blp: Blueprint, schema: ma.Schema, location: str = "json") -> Any:
    """Parse the request as ``@blp.arguments(schema)`` would (422 problem when invalid)."""
    return blp.ARGUMENTS_PARSER.parse(schema, request, location=location)
