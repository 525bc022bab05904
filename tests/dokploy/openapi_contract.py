"""Checks an HTTP request against Dokploy's OpenAPI document.

Dokploy's REST adapter maps `/api/<router>.<procedure>` to one operation: GET with query
parameters for queries, POST with a JSON body for mutations. The checker answers "would Dokploy
accept this request as it is described?": the operation exists for that method and path,
required inputs are present, nothing unknown is sent (zod would drop it silently, which hides
typos), and every value fits its schema.

Only the JSON-schema subset the document uses for inputs is implemented: type, enum, const,
anyOf, oneOf, minLength, maxLength, pattern, minimum, maximum, exclusiveMinimum,
exclusiveMaximum, required, properties, additionalProperties, items, minItems, maxItems and
local $ref. Annotations (default, format, description, ...) are ignored.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
# The vendored copy (see openapi/SOURCE.md for where it comes from and how to refresh it).
DEFAULT_OPENAPI = "tests/dokploy/openapi/openapi.json"
API_PREFIX = "/api/"

Schema = dict[str, Any]


def openapi_path() -> Path:
    """DOKPLOY_OPENAPI (to try another version), else the vendored copy; relative to the root."""
    path = Path(os.environ.get("DOKPLOY_OPENAPI") or DEFAULT_OPENAPI)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


@cache
def load_openapi(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


class Contract:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.paths: dict[str, dict[str, Any]] = document["paths"]

    def check(self, request: httpx.Request) -> list[str]:
        """Every way `request` departs from the document; empty when it conforms."""
        path = request.url.path
        if not path.startswith(API_PREFIX):
            return [f"{path} is not under {API_PREFIX}"]
        name = "/" + path.removeprefix(API_PREFIX)
        operations = self.paths.get(name)
        if operations is None:
            return [f"no operation at {name}"]
        operation = operations.get(request.method.lower())
        if operation is None:
            allowed = ", ".join(sorted(m.upper() for m in operations))
            return [f"no {request.method} operation at {name} (it takes {allowed})"]
        problems = self._auth_problems(request)
        problems += self._query_problems(operation, request.url)
        problems += self._body_problems(operation, request)
        return problems

    def _auth_problems(self, request: httpx.Request) -> list[str]:
        schemes = self.document.get("components", {}).get("securitySchemes", {})
        headers = [s["name"] for s in schemes.values() if s.get("in") == "header"]
        return [f"missing header {h}" for h in headers if not request.headers.get(h)]

    def _query_problems(self, operation: dict[str, Any], url: httpx.URL) -> list[str]:
        declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        problems: list[str] = []
        sent = url.params
        for name in sent:
            if name not in declared:
                problems.append(f"query: unknown parameter {name}")
            elif len(sent.get_list(name)) > 1:
                problems.append(f"query: {name} sent more than once")
        for name, parameter in declared.items():
            if name not in sent:
                if parameter.get("required"):
                    problems.append(f"query: missing required parameter {name}")
                continue
            schema = parameter.get("schema", {})
            value = _from_query(self._resolve(schema), sent[name])
            problems += self.value_problems(schema, value, f"query.{name}")
        return problems

    def _body_problems(self, operation: dict[str, Any], request: httpx.Request) -> list[str]:
        body = operation.get("requestBody")
        if body is None:
            return ["body: this operation takes no body"] if request.content else []
        media = body.get("content", {}).get("application/json")
        if media is None:
            return ["body: this operation does not take JSON"]
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip() != "application/json":
            return [f"body: content-type is {content_type or 'missing'}, not application/json"]
        if not request.content:
            return ["body: missing"] if body.get("required") else []
        try:
            value = json.loads(request.content)
        except ValueError:
            return ["body: not valid JSON"]
        return self.value_problems(media["schema"], value, "body", strict=True)

    def value_problems(
        self, schema: Schema, value: Any, where: str, *, strict: bool = False
    ) -> list[str]:
        """How `value` breaks `schema`. With `strict`, unknown object keys are problems too."""
        schema = self._resolve(schema)
        if "anyOf" in schema or "oneOf" in schema:
            return self._choice_problems(schema, value, where, strict=strict)
        problems: list[str] = []
        if "const" in schema and value != schema["const"]:
            problems.append(f"{where}: must be {schema['const']!r}, not {value!r}")
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
        if "type" in schema and not _has_type(value, schema["type"]):
            problems.append(f"{where}: expected {schema['type']}, got {_json_type(value)}")
            return problems
        if isinstance(value, str):
            problems += _string_problems(schema, value, where)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            problems += _number_problems(schema, value, where)
        elif isinstance(value, list):
            problems += self._array_problems(schema, value, where)
        elif isinstance(value, dict):
            problems += self._object_problems(schema, value, where, strict=strict)
        return problems

    def _choice_problems(
        self, schema: Schema, value: Any, where: str, *, strict: bool
    ) -> list[str]:
        keyword = "anyOf" if "anyOf" in schema else "oneOf"
        results = [self.value_problems(s, value, where, strict=strict) for s in schema[keyword]]
        matches = sum(1 for problems in results if not problems)
        if keyword == "anyOf" and matches:
            return []
        if keyword == "oneOf" and matches == 1:
            return []
        if matches > 1:
            return [f"{where}: matches {matches} oneOf choices"]
        details = "; ".join(p for problems in results for p in problems)
        return [f"{where}: matches none of {keyword} ({details})"]

    def _array_problems(self, schema: Schema, value: list[Any], where: str) -> list[str]:
        problems: list[str] = []
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{where}: more than {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                problems += self.value_problems(schema["items"], item, f"{where}[{index}]")
        return problems

    def _object_problems(
        self, schema: Schema, value: dict[str, Any], where: str, *, strict: bool
    ) -> list[str]:
        properties: dict[str, Schema] = schema.get("properties", {})
        problems = [
            f"{where}: missing required field {name}"
            for name in schema.get("required", [])
            if name not in value
        ]
        extra = schema.get("additionalProperties", not strict)
        for name, item in value.items():
            if name in properties:
                problems += self.value_problems(properties[name], item, f"{where}.{name}")
            elif extra is False:
                problems.append(f"{where}: unknown field {name}")
            elif isinstance(extra, dict):
                problems += self.value_problems(extra, item, f"{where}.{name}")
        return problems

    def _resolve(self, schema: Schema) -> Schema:
        while "$ref" in schema:
            target: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            schema = target
        return schema


def _string_problems(schema: Schema, value: str, where: str) -> list[str]:
    problems: list[str] = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"{where}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{where}: longer than {schema['maxLength']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
    return problems


def _number_problems(schema: Schema, value: float, where: str) -> list[str]:
    problems: list[str] = []
    if "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{where}: below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        problems.append(f"{where}: above the maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        problems.append(f"{where}: not above {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        problems.append(f"{where}: not below {schema['exclusiveMaximum']}")
    return problems


_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def _has_type(value: Any, expected: str | list[str]) -> bool:
    names = expected if isinstance(expected, list) else [expected]
    return any(_TYPES[name](value) for name in names)


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def _from_query(schema: Schema, raw: str) -> Any:
    """A query-string value as the adapter coerces it for a parameter of this schema."""
    kinds = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
    if "integer" in kinds and re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if "number" in kinds:
        try:
            return float(raw)
        except ValueError:
            return raw
    if "boolean" in kinds and raw in ("true", "false"):
        return raw == "true"
    return raw
