"""Posted forms into the HTTP API's own request schemas, with every problem listed at once."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


def many(form: dict[str, Any], key: str) -> list[str]:
    """The values of a repeated field (checkboxes), without blanks."""
    value = form.get(key, [])
    values = value if isinstance(value, list) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def one(form: dict[str, Any], key: str) -> str | None:
    """A single field's value, ``None`` when blank."""
    value = form.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def number(text: str) -> float | int | str:
    """A form field's number (the API's schemas take numbers strictly); the text if it is none."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse(
    schema: type[Model], data: dict[str, Any], numbers: tuple[str, ...] = ()
) -> tuple[Model | None, list[tuple[str, str]]]:
    """``schema`` validated from ``data`` (blank fields left out, ``numbers`` read as numbers): the
    model, or every problem."""
    cleaned = {k: v for k, v in data.items() if v not in (None, [], "")}
    for key in numbers:
        if isinstance(cleaned.get(key), str):
            cleaned[key] = number(cleaned[key])
    try:
        return schema.model_validate(cleaned), []
    except ValidationError as error:
        problems = [(".".join(str(p) for p in e["loc"]) or "-", e["msg"]) for e in error.errors()]
        return None, problems
