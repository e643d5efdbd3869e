"""The admin API under /api/v1: JSON over the same service layer as the CLI.

Every request carries ``Authorization: Bearer dm_...`` (``daisymail token create``);
read-only tokens may only GET. Bodies are JSON objects whose fields are checked by
name and type before the service layer checks their values; every refusal is a 4xx
with ``{"error": ..., "field": ...}``. Work that blocks (SQL, password hashing, queue
files) runs in a worker thread, off the event loop that also serves mail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from daisymail.config import Config
from daisymail.directory.base import Directory, DirectoryError
from daisymail.directory.tokens import TokenInfo, TokenStore
from daisymail.http.openapi import spec
from daisymail.observability import event
from daisymail.service.admin import Admin, as_dict
from daisymail.service.errors import ServiceError, invalid
from daisymail.service.queue import QueueOps
from daisymail.service.quota import QuotaOps
from daisymail.service.resolve import resolve

log = logging.getLogger("daisymail.http")
BASE = "/api/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TOKEN_KEY = web.AppKey("token", TokenInfo)
_JSON_NAMES: dict[type, str] = {int: "integer"}


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    headers = {"WWW-Authenticate": 'Bearer realm="daisymail"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


async def _body(
    request: web.Request,
    fields: Mapping[str, type | tuple[type, ...]],
    required: tuple[str, ...],
) -> Any:
    """The JSON object of a request, each field checked by name and type."""
    try:
        data = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise invalid("the body is not valid JSON", "body") from None
    if not isinstance(data, dict):
        raise invalid("expected a JSON object", "body")
    for key, value in data.items():
        if key not in fields:
            raise invalid(f"unknown field {key!r} (known: {', '.join(fields)})", str(key))
        given = fields[key]
        kinds: tuple[type, ...] = given if isinstance(given, tuple) else (given,)
        if value is not None and (
            not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))
        ):
            names = " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
            raise invalid(f"{key}: expected {names}", key)
    for key in required:
        if data.get(key) is None:
            raise invalid(f"{key} is required", key)
    return data


def _bool_query(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise invalid(f"{name}: expected true or false", name)
    return value in ("true", "1")


@dataclass
class Api:
    config: Callable[[], Config]
    directory: Directory
    tokens: TokenStore

    @property
    def admin(self) -> Admin:
        return Admin(self.directory, self.config().storage.default_format)

    @property
    def quota(self) -> QuotaOps:
        return QuotaOps(self.config(), self.directory)

    @property
    def queue(self) -> QueueOps:
        return QueueOps(self.config(), self.directory)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{BASE}/openapi.json", self.openapi)
        for path, method, handler in self._routes():
            r.add_route(method, BASE + path, self._guard(handler))

    def _routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("/domains", "GET", self.list_domains),
            ("/domains", "POST", self.add_domain),
            ("/domains/{name}", "GET", self.get_domain),
            ("/domains/{name}", "PATCH", self.update_domain),
            ("/domains/{name}", "DELETE", self.remove_domain),
            ("/mailboxes", "GET", self.list_mailboxes),
            ("/mailboxes", "POST", self.add_mailbox),
            ("/mailboxes/{name}", "GET", self.get_mailbox),
            ("/mailboxes/{name}", "PATCH", self.update_mailbox),
            ("/mailboxes/{name}", "DELETE", self.remove_mailbox),
            ("/users", "GET", self.list_users),
            ("/users", "POST", self.add_user),
            ("/users/{address}", "GET", self.get_user),
            ("/users/{address}", "DELETE", self.remove_user),
            ("/users/{address}/password", "PUT", self.set_password),
            ("/aliases", "GET", self.list_aliases),
            ("/aliases", "POST", self.add_alias),
            ("/aliases/{pattern}", "DELETE", self.remove_alias),
            ("/senders", "GET", self.list_senders),
            ("/senders", "POST", self.add_sender),
            ("/senders/{pattern}", "DELETE", self.remove_sender),
            ("/relays", "GET", self.list_relays),
            ("/relays", "POST", self.add_relay),
            ("/relays/{entry:.+}", "DELETE", self.remove_relay),
            ("/resolve", "GET", self.resolve),
            ("/queue", "GET", self.list_queue),
            ("/queue/flush", "POST", self.flush_queue),
            ("/queue/{id}", "GET", self.get_queued),
            ("/queue/{id}", "DELETE", self.remove_queued),
            ("/queue/{id}/bounce", "POST", self.bounce_queued),
        ]

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            info = await self._authenticate(request)
            if info is None:
                return _error(401, "a valid bearer token is required", "Authorization")
            if info.read_only and request.method != "GET":
                return _error(403, "this token is read-only", "Authorization")
            try:
                response = await handler(request)
            except ServiceError as e:
                response = _error(e.http_status, e.message, e.field)
            except DirectoryError as e:
                response = _error(409, str(e))
            if request.method != "GET":
                event(
                    log,
                    "api.request",
                    method=request.method,
                    path=request.path,
                    token=info.id,
                    status=response.status,
                )
            return response

        return guarded

    async def _authenticate(self, request: web.Request) -> TokenInfo | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            return await asyncio.to_thread(self.tokens.verify, token.strip())
        except Exception as e:  # the token store is unreachable: refuse, never 500
            event(log, "api.token_store_failed", logging.ERROR, error=repr(e)[:200])
            return None

    # -- openapi --------------------------------------------------------------------------
    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(spec(BASE))

    # -- domains --------------------------------------------------------------------------
    async def list_domains(self, request: web.Request) -> web.Response:
        return web.json_response(as_dict(self.admin.list_domains()))

    async def get_domain(self, request: web.Request) -> web.Response:
        return web.json_response(as_dict(self.admin.list_domains(request.match_info["name"]))[0])

    async def add_domain(self, request: web.Request) -> web.Response:
        b = await _body(request, {"name": str, "fallback": bool, "login_case": str}, ("name",))
        dom = await asyncio.to_thread(
            self.admin.add_domain, b["name"], b.get("fallback"), b.get("login_case")
        )
        return web.json_response(as_dict(dom), status=201)

    async def update_domain(self, request: web.Request) -> web.Response:
        b = await _body(request, {"fallback": bool, "login_case": str}, ())
        dom = await asyncio.to_thread(
            self.admin.update_domain,
            request.match_info["name"],
            b.get("fallback"),
            b.get("login_case"),
        )
        return web.json_response(as_dict(dom))

    async def remove_domain(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.admin.remove_domain, request.match_info["name"])
        return web.json_response({"removed": request.match_info["name"].lower()})

    # -- mailboxes ------------------------------------------------------------------------
    async def list_mailboxes(self, request: web.Request) -> web.Response:
        boxes = self.admin.list_mailboxes()
        return web.json_response(await asyncio.to_thread(self.quota.describe_all, boxes))

    async def get_mailbox(self, request: web.Request) -> web.Response:
        boxes = self.admin.list_mailboxes(request.match_info["name"])
        return web.json_response((await asyncio.to_thread(self.quota.describe_all, boxes))[0])

    async def update_mailbox(self, request: web.Request) -> web.Response:
        """``{"quota": "500M"}`` (or octets, ``"0"`` for none, ``"default"``)."""
        b = await _body(request, {"quota": (str, int)}, ("quota",))
        box = await asyncio.to_thread(self.quota.set_quota, request.match_info["name"], b["quota"])
        return web.json_response(box)

    async def add_mailbox(self, request: web.Request) -> web.Response:
        b = await _body(request, {"name": str, "format": str, "path": str}, ("name",))
        box = await asyncio.to_thread(
            self.admin.add_mailbox, b["name"], b.get("format"), b.get("path") or ""
        )
        return web.json_response(as_dict(box), status=201)

    async def remove_mailbox(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.admin.remove_mailbox, request.match_info["name"])
        return web.json_response({"removed": request.match_info["name"].lower()})

    # -- users ----------------------------------------------------------------------------
    async def list_users(self, request: web.Request) -> web.Response:
        return web.json_response(self.admin.list_users(request.query.get("domain")))

    async def get_user(self, request: web.Request) -> web.Response:
        return web.json_response(as_dict(self.admin.find_user(request.match_info["address"])))

    async def add_user(self, request: web.Request) -> web.Response:
        fields = {"address": str, "password": str, "mailbox": str}
        b = await _body(request, fields, ("address", "password"))
        login = await asyncio.to_thread(
            self.admin.add_user, b["address"], b["password"], b.get("mailbox")
        )
        return web.json_response(as_dict(login), status=201)

    async def set_password(self, request: web.Request) -> web.Response:
        b = await _body(request, {"password": str}, ("password",))
        login = await asyncio.to_thread(
            self.admin.set_password, request.match_info["address"], b["password"]
        )
        return web.json_response(as_dict(login))

    async def remove_user(self, request: web.Request) -> web.Response:
        login = await asyncio.to_thread(self.admin.remove_user, request.match_info["address"])
        return web.json_response({"removed": login.address, "mailbox_kept": login.mailbox})

    # -- aliases, sender and relay rules --------------------------------------------------
    async def list_aliases(self, request: web.Request) -> web.Response:
        return web.json_response(self.admin.list_aliases(request.query.get("domain")))

    async def add_alias(self, request: web.Request) -> web.Response:
        fields = {"pattern": str, "target": str, "create_mailbox": bool}
        b = await _body(request, fields, ("pattern", "target"))
        rule = await asyncio.to_thread(
            self.admin.add_alias, b["pattern"], b["target"], bool(b.get("create_mailbox"))
        )
        return web.json_response(as_dict(rule), status=201)

    async def remove_alias(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.admin.remove_alias, request.match_info["pattern"])
        return web.json_response({"removed": request.match_info["pattern"].lower()})

    async def list_senders(self, request: web.Request) -> web.Response:
        return web.json_response(self.admin.list_senders())

    async def add_sender(self, request: web.Request) -> web.Response:
        b = await _body(request, {"pattern": str, "target": str}, ("pattern", "target"))
        rule = await asyncio.to_thread(self.admin.add_sender, b["pattern"], b["target"])
        return web.json_response(as_dict(rule), status=201)

    async def remove_sender(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.admin.remove_sender, request.match_info["pattern"])
        return web.json_response({"removed": request.match_info["pattern"].lower()})

    async def list_relays(self, request: web.Request) -> web.Response:
        return web.json_response(as_dict(self.admin.list_relays()))

    async def add_relay(self, request: web.Request) -> web.Response:
        b = await _body(request, {"entry": str}, ("entry",))
        rule = await asyncio.to_thread(self.admin.add_relay, b["entry"])
        return web.json_response(as_dict(rule), status=201)

    async def remove_relay(self, request: web.Request) -> web.Response:
        rule = await asyncio.to_thread(self.admin.remove_relay, request.match_info["entry"])
        return web.json_response({"removed": as_dict(rule)})

    async def resolve(self, request: web.Request) -> web.Response:
        q = request.query
        if "address" not in q:
            raise invalid("address is required", "address")
        out = resolve(
            self.config(),
            self.directory.snapshot(),
            q["address"],
            q.get("client_ip", "203.0.113.1"),
            _bool_query(request, "authenticated"),
        )
        return web.json_response(out)

    # -- queue ----------------------------------------------------------------------------
    async def list_queue(self, request: web.Request) -> web.Response:
        msgs = await asyncio.to_thread(self.queue.list)
        return web.json_response(as_dict(msgs))

    async def get_queued(self, request: web.Request) -> web.Response:
        ops = self.queue
        msg_id = request.match_info["id"]
        msg = await asyncio.to_thread(ops.get, msg_id)
        headers = await asyncio.to_thread(ops.headers, msg_id)
        return web.json_response({"message": as_dict(msg), "headers": headers})

    async def flush_queue(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.queue.flush)
        return web.json_response({"flush": "requested"}, status=202)

    async def remove_queued(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.queue.remove, request.match_info["id"])
        return web.json_response({"removed": request.match_info["id"]})

    async def bounce_queued(self, request: web.Request) -> web.Response:
        res = await asyncio.to_thread(self.queue.bounce, request.match_info["id"])
        return web.json_response(as_dict(res))
