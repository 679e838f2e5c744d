"""A local stand-in for the part of Cloudflare's API v4 a DNS-01 client uses, driven by Cloudflare's own SDK.

``api.cloudflare.com/client/v4``: zones by name (``GET /zones?name=``), and a zone's DNS records: list
(``type``, ``name``/``name.exact``, ``content``/``content.exact``), create and delete. Each TXT record is its
own object with an id, as at Cloudflare; their values are served by the emulator's authoritative DNS server
(the zone lives in the same store as the Azure DNS zones), so a CA validates them.

API tokens are made through the admin API with the zones they may read and whether they may edit DNS; a token
may only see its zones, and a write without DNS:Edit is answered 403 with Cloudflare's code 10000
("Authentication error"), as Cloudflare does. Responses use Cloudflare's envelope
(``success``, ``errors``, ``messages``, ``result``, ``result_info``).
"""
from __future__ import annotations

import secrets
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from .dns_store import ZoneKey, ZoneStore
from .wire import Request, Response

CLOUDFLARE_HOST = "api.cloudflare.com"
PREFIX = "/client/v4"
# Where the stand-in keeps its zones in the shared store (the DNS server serves every zone of it).
STORE_OWNER = "cloudflare"


def _envelope(status: int, result: Any = None, *, errors: list[dict[str, Any]] | None = None,
              result_info: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"success": not errors, "errors": errors or [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return Response.of_json(status, body)


def _error(status: int, code: int, message: str) -> Response:
    return _envelope(status, None, errors=[{"code": code, "message": message}])


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> Response:
    per_page = max(1, min(5000, int(float(query.get("per_page", 100)))))
    page = max(1, int(float(query.get("page", 1))))
    chunk = items[(page - 1) * per_page: page * per_page]
    total_pages = max(1, -(-len(items) // per_page))
    return _envelope(200, chunk, result_info={"page": page, "per_page": per_page, "count": len(chunk),
                                               "total_count": len(items), "total_pages": total_pages})


class Cloudflare:
    def __init__(self, store: ZoneStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._zones: dict[str, str] = {}  # zone id -> name
        self._tokens: dict[str, dict[str, Any]] = {}  # token -> {"zones": set of names, "dns_edit": bool}
        self._records: dict[str, dict[str, Any]] = {}  # record id -> record (zone_id, name, type, content, ttl)

    # -- admin ------------------------------------------------------------------------------------------

    def handle_admin(self, request: Request) -> Response:
        """``POST /admin/cloudflare/zones {"name"}`` -> the zone; ``POST /admin/cloudflare/tokens {"zones": [...],
        "dns_edit": bool}`` -> {"token"}; ``GET /admin/cloudflare/records`` -> every record."""
        parts = [p for p in request.path.split("/") if p][2:]
        body = request.json() or {}
        if request.method == "POST" and parts == ["zones"]:
            return Response.of_json(201, self.add_zone(str(body["name"])))
        if request.method == "POST" and parts == ["tokens"]:
            return Response.of_json(201, {"token": self.add_token(body.get("zones") or [],
                                                                  dns_edit=bool(body.get("dns_edit", True)))})
        if request.method == "GET" and parts == ["records"]:
            with self._lock:
                return Response.of_json(200, {"value": list(self._records.values())})
        return Response.of_json(404, {"error": {"code": "NotFound", "message": f"no admin resource at {request.path}"}})

    def add_zone(self, name: str) -> dict[str, Any]:
        name = name.lower().rstrip(".")
        zone = self._store.create_zone(STORE_OWNER, STORE_OWNER, name)
        zone_id = uuid.uuid4().hex
        with self._lock:
            self._zones[zone_id] = name
        return self._zone_json(zone_id, name, zone.name_servers)

    def add_token(self, zones: list[str], *, dns_edit: bool) -> str:
        token = secrets.token_urlsafe(30)
        with self._lock:
            self._tokens[token] = {"zones": {z.lower().rstrip(".") for z in zones}, "dns_edit": dns_edit}
        return token

    # -- the API ----------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if not request.path.startswith(PREFIX + "/"):
            return _error(404, 7000, "No route for that URI")
        auth = request.headers.get("authorization", "")
        token = self._tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
        if token is None:
            return _error(401, 10000, "Authentication error")
        parts = [p for p in request.path[len(PREFIX):].split("/") if p]
        query = dict(request.query)
        if parts == ["zones"] and request.method == "GET":
            return self._list_zones(token, query)
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            zone_id = parts[1]
            name = self._zones.get(zone_id)
            if name is None or name not in token["zones"]:
                return _error(404 if name is None else 403, 7003 if name is None else 10000,
                              "Could not route to /zones/" + zone_id if name is None else "Authentication error")
            if len(parts) == 3 and request.method == "GET":
                return self._list_records(zone_id, query)
            if not token["dns_edit"]:
                return _error(403, 10000, "Authentication error")
            if len(parts) == 3 and request.method == "POST":
                return self._create_record(zone_id, name, request.json() or {})
            if len(parts) == 4 and request.method == "DELETE":
                return self._delete_record(zone_id, name, parts[3])
        return _error(405 if parts[:1] == ["zones"] else 404, 10405 if parts[:1] == ["zones"] else 7000,
                      f"Method {request.method} not allowed for {request.path}")

    def _list_zones(self, token: dict[str, Any], query: dict[str, str]) -> Response:
        wanted = query.get("name", "").lower().rstrip(".")
        with self._lock:
            zones = [(zid, name) for zid, name in sorted(self._zones.items(), key=lambda z: z[1])
                     if name in token["zones"] and (not wanted or name == wanted)]
        out = []
        for zid, name in zones:
            zone = self._store.get_zone(STORE_OWNER, STORE_OWNER, name)
            out.append(self._zone_json(zid, name, zone.name_servers if zone else []))
        return _page(out, query)

    def _list_records(self, zone_id: str, query: dict[str, str]) -> Response:
        name = (query.get("name.exact") or query.get("name") or "").lower().rstrip(".")
        content = query.get("content.exact") or query.get("content")
        rtype = query.get("type", "").upper()
        with self._lock:
            records = [r for r in self._records.values() if r["zone_id"] == zone_id
                       and (not name or r["name"] == name) and (not rtype or r["type"] == rtype)
                       and (content is None or r["content"] == content)]
        return _page(sorted(records, key=lambda r: (r["name"], r["created_on"])), query)

    def _create_record(self, zone_id: str, zone_name: str, body: dict[str, Any]) -> Response:
        rtype, name, content = str(body.get("type", "")).upper(), str(body.get("name", "")).lower().rstrip("."), body.get("content")
        if rtype != "TXT":
            return _error(400, 9004, "This record type is not supported by the stand-in (TXT only)")
        if not isinstance(content, str) or not content:
            return _error(400, 9021, "Invalid content for a TXT record")
        if not (name == zone_name or name.endswith("." + zone_name)):
            return _error(400, 9005, f"Content for {name} must be within the zone {zone_name}")
        ttl = int(body.get("ttl") or 1)
        if ttl != 1 and not 60 <= ttl <= 86400:
            return _error(400, 9020, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic")
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        record = {"id": uuid.uuid4().hex, "zone_id": zone_id, "zone_name": zone_name, "name": name, "type": "TXT",
                  "content": content, "ttl": ttl, "proxied": False, "proxiable": False, "comment": None, "tags": [],
                  "meta": {}, "settings": {}, "created_on": now, "modified_on": now}
        with self._lock:
            if any(r["zone_id"] == zone_id and r["name"] == name and r["type"] == "TXT" and r["content"] == content
                   for r in self._records.values()):
                return _error(400, 81058, "An identical record already exists.")
            self._records[record["id"]] = record
            self._publish(zone_name, name)
        return _envelope(200, record)

    def _delete_record(self, zone_id: str, zone_name: str, record_id: str) -> Response:
        with self._lock:
            record = self._records.get(record_id)
            if record is None or record["zone_id"] != zone_id:
                return _error(404, 81044, "Record does not exist.")
            del self._records[record_id]
            self._publish(zone_name, record["name"])
        return _envelope(200, {"id": record_id})

    # -- DNS --------------------------------------------------------------------------------------------

    def _publish(self, zone_name: str, name: str) -> None:
        """The TXT values at ``name`` as the zone's authoritative server answers them (called under the lock)."""
        key = ZoneKey.of(STORE_OWNER, STORE_OWNER, zone_name)
        zone = self._store.get_zone(STORE_OWNER, STORE_OWNER, zone_name)
        if zone is None:
            return
        relative = zone.relative_name(dns.name.from_text(name))
        values = [r["content"] for r in self._records.values() if r["name"] == name and r["type"] == "TXT"]
        if not values:
            self._store.delete_record_set(key, relative, "TXT")
            return
        rdatas = [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, '"' + v.strip('"') + '"') for v in values]
        self._store.put_record_set(key, relative, "TXT", ttl=60, records=rdatas)

    @staticmethod
    def _zone_json(zone_id: str, name: str, name_servers: list[str]) -> dict[str, Any]:
        return {"id": zone_id, "name": name, "status": "active", "paused": False, "type": "full",
                "name_servers": list(name_servers), "original_name_servers": None,
                "account": {"id": "0" * 32, "name": "keyvault-acme tests"}, "permissions": [],
                "plan": {"id": "free", "name": "Free Website"}, "development_mode": 0,
                "created_on": "2026-01-01T00:00:00Z", "modified_on": "2026-01-01T00:00:00Z"}
