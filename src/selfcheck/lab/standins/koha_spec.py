"""Koha's published REST specification (the Swagger 2.0 subset in lab/standins/koha_openapi/) as a
checker: a request or a response that does not match it is a Violation.

The document itself is checked with openapi-spec-validator when loaded; bodies are checked
with jsonschema (Draft 4, the dialect of Swagger 2.0) against the document's definitions;
parameters (path, query, header, formData) by their declared type, enum and `required`. An
unknown query parameter or x-koha-* header is a violation too: a typo must not pass.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml
from jsonschema import Draft4Validator
from openapi_spec_validator import OpenAPIV2SpecValidator, validate

SPEC = Path(__file__).with_name("koha_openapi") / "koha-swagger-subset.yaml"
# Headers Koha's authenticator reads on every route, whatever the operation declares
# (Koha/REST/V1/Auth.pm: x-koha-library sets the branch the request acts for).
GLOBAL_HEADERS = {"x-koha-library"}


class Violation(ValueError):
    pass


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # /checkouts/{checkout_id}
    spec: dict[str, Any]
    params: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Request:
    op: Operation
    path_params: dict[str, Any]
    query: dict[str, Any]
    body: Any


class Spec:
    @staticmethod
    @cache
    def load(path: Path = SPEC) -> Spec:
        """One checked Spec per process: checking the document takes a second."""
        return Spec(path)

    def __init__(self, path: Path = SPEC) -> None:
        self.doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        validate(self.doc, cls=OpenAPIV2SpecValidator)  # the document itself
        self.base = self.doc["basePath"]
        self._validators: dict[int, Draft4Validator] = {}
        self.routes: list[tuple[re.Pattern[str], str]] = []
        # Literal segments before templated ones: /checkouts/availability is not an id.
        for template in sorted(self.doc["paths"], key=lambda t: (t.count("{"), t)):
            parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, ...
            pattern = "".join(f"(?P<{x}>[^/]+)" if n % 2 else re.escape(x)
                              for n, x in enumerate(parts))
            self.routes.append((re.compile(f"^{re.escape(self.base)}{pattern}$"), template))

    def _param(self, p: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in p:
            return dict(self.doc["parameters"][p["$ref"].rsplit("/", 1)[1]])
        return p

    def operation(self, method: str, template: str) -> Operation:
        spec = self.doc["paths"][template][method.lower()]
        return Operation(method.upper(), template, spec,
                         tuple(self._param(p) for p in spec.get("parameters", [])))

    def validator(self, schema: dict[str, Any]) -> Draft4Validator:
        """One per schema object of the document (they live as long as the Spec)."""
        made = self._validators.get(id(schema))
        if made is None:
            made = Draft4Validator({"definitions": self.doc["definitions"], "allOf": [schema]},
                                   format_checker=Draft4Validator.FORMAT_CHECKER)
            self._validators[id(schema)] = made
        return made

    def check_request(self, method: str, path: str, query: str, headers: dict[str, str],
                      body: bytes) -> Request:
        """The operation and the typed parameters, or Violation saying what is wrong."""
        op = None
        for pattern, template in self.routes:
            if (hit := pattern.match(path)) and method.lower() in self.doc["paths"][template]:
                op, groups = self.operation(method, template), hit.groupdict()
                break
        if op is None:
            raise Violation(f"{method} {path}: no such operation in the specification")
        security = op.spec.get("security", self.doc.get("security", []))
        auth = headers.get("authorization", "")
        if security and not auth.startswith(("Basic ", "Bearer ")):
            raise Violation(f"{method} {op.template}: no credentials")
        declared = {(p["in"], p["name"].lower()): p for p in op.params}
        out_path = {name: self._typed(declared[("path", name.lower())], [value])
                    for name, value in groups.items()}
        raw_query = parse_qs(query, keep_blank_values=True)
        out_query: dict[str, Any] = {}
        for name, values in raw_query.items():
            p = declared.get(("query", name.lower()))
            if p is None:
                raise Violation(f"{method} {op.template}: unknown query parameter {name!r}")
            out_query[name] = self._typed(p, values)
        for name, value in headers.items():
            p = declared.get(("header", name))
            if p is None:
                if name.startswith("x-koha-") and name not in GLOBAL_HEADERS:
                    raise Violation(f"{method} {op.template}: undeclared header {name!r}")
                continue
            self._typed(p, [value])
        for (where, name), p in declared.items():
            if p.get("required") and where == "query" and name not in {
                    k.lower() for k in raw_query}:
                raise Violation(f"{method} {op.template}: query {name!r} is required")
        body_param = next((p for p in op.params if p["in"] == "body"), None)
        form = [p for p in op.params if p["in"] == "formData"]
        ctype = headers.get("content-type", "").split(";")[0].strip()
        parsed: Any = None
        if form:
            if ctype != "application/x-www-form-urlencoded":
                raise Violation(f"{method} {op.template}: form data expected, got {ctype!r}")
            fields = parse_qs(body.decode(), keep_blank_values=True)
            names = {p["name"] for p in form}
            if extra := set(fields) - names:
                raise Violation(f"{method} {op.template}: unknown form field {min(extra)!r}")
            for p in form:
                if p.get("required") and p["name"] not in fields:
                    raise Violation(f"{method} {op.template}: form field {p['name']!r} "
                                    "is required")
            parsed = {k: v[-1] for k, v in fields.items()}
        elif body:
            if body_param is None:
                raise Violation(f"{method} {op.template}: takes no body")
            if ctype != "application/json":
                raise Violation(f"{method} {op.template}: JSON body expected, got {ctype!r}")
            try:
                parsed = json.loads(body)
            except ValueError:
                raise Violation(f"{method} {op.template}: body is not JSON") from None
            self._schema(body_param["schema"], parsed, f"{method} {op.template} body")
        elif body_param is not None and body_param.get("required"):
            raise Violation(f"{method} {op.template}: body is required")
        return Request(op, out_path, out_query, parsed)

    def check_response(self, op: Operation, status: int, body: Any | None) -> None:
        responses = op.spec["responses"]
        declared = responses.get(str(status)) or responses.get("default")
        if declared is None:
            raise Violation(f"{op.method} {op.template}: status {status} is not declared")
        schema = declared.get("schema")
        if schema is None:
            if body is not None:
                raise Violation(f"{op.method} {op.template}: {status} has no body")
            return
        self._schema(schema, body, f"{op.method} {op.template} -> {status}")

    def _schema(self, schema: dict[str, Any], value: Any, what: str) -> None:
        errors = sorted(self.validator(schema).iter_errors(value), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            raise Violation(f"{what}: {where}: {e.message}")

    @staticmethod
    def _typed(p: dict[str, Any], values: list[str]) -> Any:
        kind = p.get("type", "string")
        if kind == "array":
            fmt = p.get("collectionFormat", "csv")
            if fmt != "multi" and len(values) > 1:
                raise Violation(f"{p['name']}: given {len(values)} times")
            items = values if fmt == "multi" else values[0].split(",")
            sub = {"name": p["name"], **p.get("items", {})}
            return [Spec._typed(sub, [v]) for v in items]
        if len(values) > 1:
            raise Violation(f"{p['name']}: given {len(values)} times")
        value = values[0]
        out: Any = value
        if kind == "integer":
            if not re.fullmatch(r"-?\d+", value):
                raise Violation(f"{p['name']}: {value!r} is not an integer")
            out = int(value)
        elif kind == "boolean":
            if value not in ("true", "false", "1", "0"):
                raise Violation(f"{p['name']}: {value!r} is not a boolean")
            out = value in ("true", "1")
        if "enum" in p and out not in p["enum"]:
            raise Violation(f"{p['name']}: {value!r} is not one of {p['enum']}")
        return out

