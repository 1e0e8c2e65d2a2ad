"""Generate the TalkingVideo CustomResourceDefinition from the pydantic models.

`python -m multitalk.operator.crd` rewrites crds/talkingvideos.multitalk.dev.yaml;
`python -m multitalk.operator.crd --check` exits 1 when the file is stale. The Helm
chart's copy is checked against `crd_manifest()` by the chart's tests.

Pydantic's JSON Schema is turned into a structural OpenAPI v3 schema: $refs inlined,
Optional unwrapped, tuples as fixed-size arrays, int-or-string and free-form Kubernetes
fields marked, titles dropped, descriptions kept for `kubectl explain`.

Immutability: every spec field except suspend and pendingDeadlineSeconds carries a CEL
transition rule `self == oldSelf`, and optional ones may not be added or removed. The
API server cannot know whether the Job exists yet, so the spec is immutable from
creation on: a new render is a new object. The operator ignores (with a Warning event)
changes that slip past an API server without these rules.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from multitalk.operator import api
from multitalk.operator.status_types import TalkingVideoStatus
from multitalk.runner.request import ApiModel

CRD_NAME = f"{api.PLURAL}.{api.GROUP}"
CRD_PATH = Path(__file__).resolve().parent.parent / "crds" / f"{CRD_NAME}.yaml"

IMMUTABLE_MESSAGE = (
    "is immutable: a new render is a new TalkingVideo (only suspend and pendingDeadlineSeconds may change)"
)

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Engine", "type": "string", "jsonPath": ".status.engine.name"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progressText"},
    {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Output", "type": "string", "jsonPath": ".status.output.uri", "priority": 1},
    {"name": "Node", "type": "string", "jsonPath": ".status.pod.nodeName", "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]

_DROP = {"title", "additionalProperties", "$defs", "prefixItems", "discriminator"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """One pydantic JSON-Schema node -> one structural OpenAPI v3 node."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}  # the field's own description/default win
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o != {"type": "null"}]
        if node.get("default", 0) is None:
            node.pop("default")
        types = sorted(o.get("type", "") for o in options)
        if types == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
        elif len(options) == 1:
            node = {**_structural(options[0], defs), **{k: v for k, v in node.items()}}
            return _structural(node, defs)
        else:
            raise ValueError(f"cannot express a union in a structural schema: {options}")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "prefixItems" in node:
        item_types = {p.get("type") for p in node["prefixItems"]}
        if len(item_types) != 1:
            raise ValueError("tuples must have one item type")
        node["items"] = {"type": item_types.pop()}
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"], node["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if "exclusiveMaximum" in node and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"], node["exclusiveMaximum"] = node["exclusiveMaximum"], True
    free_form = node.get("x-kubernetes-preserve-unknown-fields") or node.get("additionalProperties") is True
    additional = node.get("additionalProperties")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    if free_form:
        out["type"] = "object"
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(additional, dict):
        out["additionalProperties"] = _structural(additional, defs)
    if out.get("type") == "object" and "properties" in out:
        # Nested defaults apply only when the parent object exists: default optional
        # sections to {} so `kubectl get -o yaml` shows every effective value.
        for name, sub in out["properties"].items():
            factory = bool(sub.pop("_factory", False))
            if (
                factory
                and sub.get("type") == "object"
                and "properties" in sub
                and not sub.get("required")
                and "default" not in sub
                and name not in out.get("required", [])
            ):
                sub["default"] = {}
    return out


def _mark_factories(schema: dict[str, Any], model: type[ApiModel]) -> None:
    """Tag properties whose pydantic field uses default_factory (pydantic omits their default)."""
    for name, field in model.model_fields.items():
        alias = field.alias or name
        if field.default_factory is not None and alias in schema.get("properties", {}):
            schema["properties"][alias]["_factory"] = True


def _model_schema(model: type[ApiModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    # Tag default_factory fields of every model reachable through $defs.
    for sub in _walk_models(model):
        target = raw if sub is model else defs.get(sub.__name__)
        if target is not None:
            _mark_factories(target, sub)
    result = _structural(raw, defs)
    assert isinstance(result, dict)
    return result


def _walk_models(model: type[ApiModel]) -> list[type[ApiModel]]:
    seen: list[type[ApiModel]] = []
    stack = [model]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        for field in current.model_fields.values():
            for arg in _type_args(field.annotation):
                if isinstance(arg, type) and issubclass(arg, ApiModel):
                    stack.append(arg)
    return seen


def _type_args(annotation: Any) -> list[Any]:
    args = list(getattr(annotation, "__args__", ()) or ())
    out = [annotation]
    for arg in args:
        out.extend(_type_args(arg))
    return out


def spec_schema() -> dict[str, Any]:
    """The structural schema of .spec: the models' CEL rules (runner/rules.py), plus immutability."""
    spec = _model_schema(api.TalkingVideoSpec)
    spec.setdefault("x-kubernetes-validations", [])
    required = set(spec.get("required", []))
    for name, field in api.TalkingVideoSpec.model_fields.items():
        if name in api.MUTABLE_FIELDS:
            continue
        alias = field.alias or name
        prop = spec["properties"][alias]
        prop.setdefault("x-kubernetes-validations", []).append(
            {"rule": "self == oldSelf", "message": IMMUTABLE_MESSAGE}
        )
        if alias not in required and "default" not in prop:
            spec["x-kubernetes-validations"].append(
                {
                    "rule": f"has(self.{alias}) == has(oldSelf.{alias})",
                    "message": f"{alias} cannot be added or removed after creation",
                    "fieldPath": f".{alias}",
                }
            )
    return spec


def status_schema() -> dict[str, Any]:
    return _model_schema(TalkingVideoStatus)


def openapi_schema() -> dict[str, Any]:
    """The whole object's schema (what goes under versions[].schema.openAPIV3Schema)."""
    return {
        "type": "object",
        "description": "A talking video rendered from speech and a portrait by a GPU Job (MultiTalk).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "multitalk.dev/v1alpha1"},
            "kind": {"type": "string", "description": "TalkingVideo"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict (also what the Helm chart's copy must equal)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "multitalk-operator", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": list(api.CATEGORIES),
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


HEADER = "# Generated by `python -m multitalk.operator.crd` from operator/api.py. Do not edit.\n"


def render_yaml(manifest: dict[str, Any] | None = None) -> str:
    return HEADER + yaml.safe_dump(manifest or crd_manifest(), sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) the TalkingVideo CRD.")
    parser.add_argument("--check", action="store_true", help="exit 1 when the checked-in CRD is stale")
    parser.add_argument("--out", type=Path, default=CRD_PATH, help="file to write or check")
    args = parser.parse_args(argv)
    text = render_yaml()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python -m multitalk.operator.crd", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
