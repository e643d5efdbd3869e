"""The OpenAPI 3.0 description of the admin API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from daisymail import __version__

_S = {"type": "string"}
_B = {"type": "boolean"}
_I = {"type": "integer"}
_ERROR = {
    "description": "Refused: the error names the field",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    status: str = "200",
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    errors: tuple[str, ...] = ("400", "404", "409"),
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {status: _json(ok)}}
    for code in ("401", "403", *errors):
        op["responses"][code] = _ERROR
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _S}


def _query(name: str, schema: dict[str, Any] = _S, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def spec(base: str) -> dict[str, Any]:
    ref = {
        name: {"$ref": f"#/components/schemas/{name}"}
        for name in ("Domain", "Mailbox", "User", "Rule", "Relay", "Queued", "Resolution")
    }
    any_obj = {"type": "object"}

    def lst(name: str) -> dict[str, Any]:
        return {"type": "array", "items": ref[name]}

    paths: dict[str, Any] = {
        "/domains": {
            "get": _op("List hosted domains", lst("Domain")),
            "post": _op(
                "Host a domain",
                ref["Domain"],
                status="201",
                body=_obj(
                    {
                        "name": _S,
                        "fallback": _B,
                        "login_case": {"type": "string", "enum": ["sensitive", "insensitive"]},
                    },
                    ("name",),
                ),
            ),
        },
        "/domains/{name}": {
            "parameters": [_path("name")],
            "get": _op("One domain", ref["Domain"]),
            "patch": _op(
                "Change a domain's settings",
                ref["Domain"],
                body=_obj(
                    {
                        "fallback": _B,
                        "login_case": {"type": "string", "enum": ["sensitive", "insensitive"]},
                    }
                ),
            ),
            "delete": _op("Stop hosting a domain (refused while it has users)", any_obj),
        },
        "/mailboxes": {
            "get": _op("List mailboxes", lst("Mailbox")),
            "post": _op(
                "Create a mailbox",
                ref["Mailbox"],
                status="201",
                body=_obj(
                    {
                        "name": _S,
                        "format": {"type": "string", "enum": ["maildir", "mbox"]},
                        "path": _S,
                    },
                    ("name",),
                ),
            ),
        },
        "/mailboxes/{name}": {
            "parameters": [_path("name")],
            "get": _op("One mailbox", ref["Mailbox"]),
            "patch": _op(
                "Set a Maildir mailbox's quota (octets, 500M, 0 for none, default)",
                ref["Mailbox"],
                body=_obj({"quota": {"oneOf": [_S, _I]}}, ("quota",)),
            ),
            "delete": _op("Remove a mailbox record (files stay on disk)", any_obj),
        },
        "/users": {
            "get": _op("List users", lst("User"), params=[_query("domain")]),
            "post": _op(
                "Add a user: login, address rule and (if missing) mailbox",
                ref["User"],
                status="201",
                body=_obj(
                    {
                        "address": _S,
                        "password": {"type": "string", "writeOnly": True},
                        "mailbox": _S,
                    },
                    ("address", "password"),
                ),
            ),
        },
        "/users/{address}": {
            "parameters": [_path("address")],
            "get": _op("One user (never its password)", ref["User"]),
            "delete": _op("Remove a user (the mailbox is kept)", any_obj),
        },
        "/users/{address}/password": {
            "parameters": [_path("address")],
            "put": _op(
                "Set a user's password",
                ref["User"],
                body=_obj({"password": {"type": "string", "writeOnly": True}}, ("password",)),
            ),
        },
        "/aliases": {
            "get": _op("List address rules", lst("Rule"), params=[_query("domain")]),
            "post": _op(
                "Route a pattern to a mailbox, an address or error:CODE text",
                ref["Rule"],
                status="201",
                body=_obj(
                    {"pattern": _S, "target": _S, "create_mailbox": _B}, ("pattern", "target")
                ),
            ),
        },
        "/aliases/{pattern}": {
            "parameters": [_path("pattern")],
            "delete": _op("Remove an address rule", any_obj),
        },
        "/senders": {
            "get": _op("List sender rewriting rules", lst("Rule")),
            "post": _op(
                "Rewrite a sender",
                ref["Rule"],
                status="201",
                body=_obj({"pattern": _S, "target": _S}, ("pattern", "target")),
            ),
        },
        "/senders/{pattern}": {
            "parameters": [_path("pattern")],
            "delete": _op("Remove a sender rule", any_obj),
        },
        "/relays": {
            "get": _op("List relay rules", lst("Relay")),
            "post": _op(
                "Allow relaying to a domain or from a network",
                ref["Relay"],
                status="201",
                body=_obj({"entry": _S}, ("entry",)),
            ),
        },
        "/relays/{entry}": {
            "parameters": [_path("entry")],
            "delete": _op("Remove a relay rule", any_obj),
        },
        "/resolve": {
            "get": _op(
                "Explain what Daisy would do with mail to an address",
                ref["Resolution"],
                params=[
                    _query("address", required=True),
                    _query("client_ip"),
                    _query("authenticated", {"type": "string", "enum": ["true", "false"]}),
                ],
            )
        },
        "/queue": {"get": _op("Queued messages", lst("Queued"))},
        "/queue/flush": {"post": _op("Retry every message now", any_obj, status="202")},
        "/queue/{id}": {
            "parameters": [_path("id")],
            "get": _op("One queued message and its header", any_obj),
            "delete": _op("Delete a message without telling anyone", any_obj),
        },
        "/queue/{id}/bounce": {
            "parameters": [_path("id")],
            "post": _op("Return a message to its sender now", any_obj),
        },
    }
    schemas = {
        "Error": _obj({"error": _S, "field": _S}, ("error",)),
        "Domain": _obj(
            {"name": _S, "fallback": _B, "login_case_sensitive": _B, "generics": _B, "origin": _S}
        ),
        "Mailbox": _obj(
            {
                "name": _S,
                "format": _S,
                "path": _S,
                "quota": _I,  # octets, 0: none
                "quota_default": _B,  # the [storage] quota applies
                "used": {"type": "integer", "nullable": True},  # null: mbox, no quota
            }
        ),
        "User": _obj({"address": _S, "mailbox": _S}),
        "Rule": _obj({"pattern": _S, "target": _S}),
        "Relay": _obj({"pattern": _S, "kind": _S}),
        "Queued": any_obj,
        "Resolution": _obj({"address": _S, "decision": _S, "steps": {"type": "array"}}),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Daisy admin API", "version": __version__},
        "servers": [{"url": base}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
