"""Shared model configuration: camelCase on the wire, unknown fields refused."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every API object. ``to_wire`` drops unset fields so manifests stay small."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


M = TypeVar("M", bound=BaseModel)


def deep_copy(model: M) -> M:
    """A deep copy of a model, made by dumping it and validating the dump: pydantic's own
    ``model_copy(deep=True)`` walks every Python object with ``copy.deepcopy`` and took a
    twentieth of the operator's CPU at scale; its core validates natively, 3-4x faster.
    A model holding what does not validate (assigned, not parsed) is copied as it is."""
    try:
        return type(model).model_validate(
            model.model_dump(by_alias=True, round_trip=True, warnings=False)
        )
    except ValidationError:
        return model.model_copy(deep=True)


def describe_errors(error: ValidationError, prefix: str = "") -> str:
    """A model's validation errors as one line a user can act on: ``field.path: problem``
    for each, joined by "; " (the webhook, status and the SDK all say it this way)."""
    parts = []
    for e in error.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"])
        if where or prefix:
            where = f"{prefix}{where}".rstrip(".")
        parts.append(f"{where}: {e['msg']}" if where else str(e["msg"]))
    return "; ".join(parts)
