"""Validation rules that exist in two forms: Python for the runner and operator, CEL for the API server.

A `Rule` holds both forms and the one message they share, so neither can change alone:
- on a field, `Annotated[T, RULE]`: pydantic runs the Python check after the field's own
  validation, and the field's JSON schema carries the rule as an
  `x-kubernetes-validations` entry (the CRD generator keeps it);
- on a model, `rules: ClassVar[tuple[Rule, ...]]` on an `ApiModel` subclass: checked after
  the model is built (subclasses inherit their bases' rules), and published on the
  model's schema the same way.
A rule's `holds` sees the validated Python value; its `cel` sees the wire object (camelCase
names), which is why each rule is written twice - once per language - side by side.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.alias_generators import to_snake
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

CEL_KEY = "x-kubernetes-validations"


@dataclass(frozen=True)
class Rule:
    """One rule: `cel` for the API server, `holds` for Python, one `message` for both."""

    cel: str
    holds: Callable[[Any], bool] = field(compare=False)
    message: str
    # Where the API server reports a model-level refusal, relative to the model (".image").
    field_path: str | None = None
    # Python-only detail appended to the message (the values that broke the rule).
    detail: Callable[[Any], str] | None = field(default=None, compare=False)

    def check(self, value: Any) -> None:
        if not self.holds(value):
            extra = f" ({self.detail(value)})" if self.detail is not None else ""
            raise ValueError(self.message + extra)

    def location(self) -> tuple[str, ...]:
        """`field_path` as a pydantic location: ".image" -> ("image",) (snake_case names)."""
        return tuple(to_snake(part) for part in (self.field_path or "").split(".") if part)

    def cel_entry(self) -> dict[str, str]:
        entry = {"rule": self.cel, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry

    # As `Annotated` metadata on a field: the check after validation, the CEL on the schema.
    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        def validate(value: Any) -> Any:
            self.check(value)
            return value

        return core_schema.no_info_after_validator_function(validate, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        out.setdefault(CEL_KEY, []).append(self.cel_entry())
        return out


@functools.cache
def model_rules(cls: type) -> tuple[Rule, ...]:
    """The rules of a model class and its bases, base rules first, each once."""
    seen: list[Rule] = []
    for klass in reversed(cls.__mro__):
        for rule in vars(klass).get("rules", ()):
            if isinstance(rule, Rule) and rule not in seen:
                seen.append(rule)
    return tuple(seen)


def publish_model_rules(schema: dict[str, Any], cls: type) -> None:
    """pydantic `json_schema_extra` hook: a model's rules on its JSON schema."""
    rules = model_rules(cls)
    if rules:
        schema.setdefault(CEL_KEY, []).extend(rule.cel_entry() for rule in rules)
