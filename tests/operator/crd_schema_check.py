"""Validate objects against the generated CRD the way the API server does, minus the server.

Order as in kube-apiserver: unknown fields (strict field validation, kubectl's default),
defaults, OpenAPI value validation (jsonschema, draft 4 = OpenAPI v3.0's boolean
exclusiveMinimum), then x-kubernetes-validations CEL rules (cel-python), with oldSelf
for transition rules on updates. Messages name the field like the API server does.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import celpy
import jsonschema

_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _program(rule: str) -> Any:
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule))
    return _PROGRAMS[rule]


def _path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def apply_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    if isinstance(obj, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name not in obj and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
            if name in obj:
                obj[name] = apply_defaults(obj[name], sub)
    elif isinstance(obj, list) and "items" in schema:
        return [apply_defaults(item, schema["items"]) for item in obj]
    return obj


def _as_schema_types(obj: Any, schema: dict[str, Any]) -> Any:
    """Numbers declared `number` are doubles in CEL even when written as integers."""
    if schema.get("type") == "number" and isinstance(obj, int) and not isinstance(obj, bool):
        return float(obj)
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else {}
        return {k: _as_schema_types(v, props.get(k, extra or {})) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_as_schema_types(v, schema.get("items", {})) for v in obj]
    return obj


def _unknown_fields(obj: Any, schema: dict[str, Any], path: list[str | int], errors: list[str]) -> None:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(obj, dict):
        if "properties" in schema:
            for key, value in obj.items():
                if key not in schema["properties"]:
                    errors.append(f'{_path([*path, key])}: unknown field "{key}"')
                else:
                    _unknown_fields(value, schema["properties"][key], [*path, key], errors)
        elif isinstance(schema.get("additionalProperties"), dict):
            for key, value in obj.items():
                _unknown_fields(value, schema["additionalProperties"], [*path, key], errors)
    elif isinstance(obj, list) and "items" in schema:
        for i, value in enumerate(obj):
            _unknown_fields(value, schema["items"], [*path, i], errors)


def _cel(
    obj: Any,
    old: Any,
    schema: dict[str, Any],
    path: list[str | int],
    errors: list[str],
    has_old: bool,
    fired: set[str],
) -> None:
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and not has_old:
            continue
        activation = {"self": celpy.json_to_cel(_as_schema_types(obj, schema))}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(_as_schema_types(old, schema))
        result = _program(rule["rule"]).evaluate(activation)
        if isinstance(result, celpy.CELEvalError):
            errors.append(f"{_path(path)}: rule {rule['rule']!r} could not be evaluated: {result}")
        elif not result:
            where = _path(path) + rule.get("fieldPath", "")
            errors.append(f"{where}: Invalid value: {rule['message']}")
            fired.add(rule["rule"])
    if isinstance(obj, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key in obj:
                old_value = old.get(key) if has_old and isinstance(old, dict) else None
                present = has_old and isinstance(old, dict) and key in old
                _cel(obj[key], old_value, sub, [*path, key], errors, present, fired)
    elif isinstance(obj, list) and "items" in schema:
        # Kubernetes correlates old list items only for map lists; ours are atomic lists.
        for i, value in enumerate(obj):
            _cel(value, None, schema["items"], [*path, i], errors, False, fired)


def validate(
    obj: dict[str, Any], crd: dict[str, Any], old: dict[str, Any] | None = None, fired: set[str] | None = None
) -> list[str]:
    """Errors (empty when the API server would accept the create/update); the CEL rules that
    refused it are added to `fired`."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    errors: list[str] = []
    _unknown_fields(obj, schema, [], errors)
    obj = apply_defaults(copy.deepcopy(obj), schema)
    if old is not None:
        old = apply_defaults(copy.deepcopy(old), schema)
    validator = jsonschema.Draft4Validator(schema)
    for err in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        where = list(err.absolute_path)
        if err.validator == "required":
            missing = re.match(r"'(.+)' is a required property", err.message)
            where.append(missing.group(1) if missing else "?")
            errors.append(f"{_path(where)}: Required value")
            continue
        errors.append(f"{_path(where)}: Invalid value: {err.message}")
    if not errors:
        _cel(obj, old, schema, [], errors, old is not None, set() if fired is None else fired)
    return errors


def prunable(obj: Any, schema: dict[str, Any]) -> list[str]:
    """Paths of the fields the API server would drop from `obj` (not in the structural schema)."""
    found: list[str] = []
    _unknown_fields(obj, schema, [], found)
    return found
