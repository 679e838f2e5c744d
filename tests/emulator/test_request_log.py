"""The emulator's request log: what the engine's request-count tests read (GET /admin/requests)."""
from __future__ import annotations

import uuid

from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient


def test_every_answered_request_is_logged_in_order_and_filtered_by_host(azure_env, root_app):
    vault = f"log{uuid.uuid4().hex[:8]}"
    mark = azure_env.admin.request_mark()
    client = SecretClient(f"https://{vault}.vault.azure.net",
                          ClientSecretCredential(root_app["tenant_id"], root_app["client_id"], root_app["secret"]))
    client.set_secret("a", "1")
    assert client.get_secret("a").value == "1"

    seen = azure_env.admin.requests(since=mark, host=f"{vault}.vault.azure.net")
    # The SDK's first request goes without a token and is answered 401 with the challenge.
    assert [(r["method"], r["path"], r["status"]) for r in seen] == [
        ("PUT", "/secrets/a", 401), ("PUT", "/secrets/a", 200), ("GET", "/secrets/a/", 200)]
    assert [r["seq"] for r in seen] == sorted(r["seq"] for r in seen) and seen[0]["seq"] > mark
    assert azure_env.admin.requests(since=seen[-1]["seq"], host=f"{vault}.vault.azure.net") == []
    assert any(r["host"] == "login.microsoftonline.com" for r in azure_env.admin.requests(since=mark))
