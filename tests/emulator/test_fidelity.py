"""The emulator's answers have the shapes real Key Vault gave in recorded traffic (fixtures/keyvault_recorded_shapes.json).

Each test replays the recorded request sequence with the recorded request bodies and compares status codes,
header names and JSON key sets, never values that differ per run.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from emulator.entra import DEFAULT_TENANT

from .helpers import API, LocalCA, bearer

SHAPES = json.loads((Path(__file__).parent / "fixtures" / "keyvault_recorded_shapes.json").read_text())
RECORDED_CREATE = {"policy": {"x509_props": {"subject": "CN=MyCert", "sans": {}},
                              "issuer": {"name": "Unknown", "cert_transparency": False}}}


@pytest.fixture
def kv(raw, emu, root_app, vault_url):
    auth = bearer(emu, root_app["client_id"])

    def call(method: str, path: str, body=None):
        return raw.request(method, vault_url + path, params=API, headers=auth, json=body)
    return call


def _assert_shape(response, shape, keys="keys"):
    assert response.status_code == shape["status"], response.text
    for header in shape.get("headers", []):
        assert header in response.headers, header
    assert sorted(response.json()) == sorted(shape[keys])


def _assert_error(response, shape, name):
    assert response.status_code == shape["status"]
    error = response.json()["error"]
    assert error["code"] == shape["error_code"]
    assert error["message"] == shape["message"].format(name=name)


def test_challenge_shape(raw, vault_url):
    shape = SHAPES["challenge"]
    response = raw.post(f"{vault_url}certificates/MyCert/create", params=API)
    assert response.status_code == shape["status"]
    assert response.headers["WWW-Authenticate"] == shape["www_authenticate"].format(tenant=DEFAULT_TENANT)
    assert sorted(response.json()["error"]) == sorted(shape["error_keys"])
    assert (response.json()["error"]["code"], response.json()["error"]["message"]) == (shape["error_code"],
                                                                                        shape["message"])


def test_merge_flow_shapes(kv):
    created = kv("POST", "certificates/MyCert/create", RECORDED_CREATE)
    _assert_shape(created, SHAPES["create"])
    assert created.headers["Retry-After"] == SHAPES["create"]["retry_after"]
    assert created.json()["status"] == SHAPES["create"]["status_value"]
    assert created.json()["status_details"] == SHAPES["create"]["status_details"]

    pending = kv("GET", "certificates/MyCert/pending")
    _assert_shape(pending, SHAPES["pending"])

    chain = LocalCA().chain_der(base64.b64decode(pending.json()["csr"]))
    # The SDK sends each certificate as base64 of its base64 text.
    merged = kv("POST", "certificates/MyCert/pending/merge",
                {"x5c": [base64.b64encode(base64.b64encode(der)).decode() for der in chain]})
    shape = SHAPES["merge"]
    _assert_shape(merged, shape)
    body = merged.json()
    assert sorted(body["attributes"]) == sorted(shape["attributes_keys"])
    assert sorted(body["policy"]) == sorted(shape["policy_keys"])
    assert sorted(body["policy"]["attributes"]) == sorted(shape["policy_attributes_keys"])
    assert sorted(body["policy"]["key_props"]) == sorted(shape["key_props_keys_rsa"])
    assert sorted(body["policy"]["x509_props"]) == sorted(shape["x509_props_keys"])
    defaults = shape["defaults"]
    x509_props = body["policy"]["x509_props"]
    assert (x509_props["ekus"], x509_props["key_usage"], x509_props["validity_months"],
            x509_props["basic_constraints"]) == (defaults["ekus"], defaults["key_usage_rsa"],
                                                 defaults["validity_months"], defaults["basic_constraints"])
    assert body["policy"]["secret_props"] == defaults["secret_props"]
    assert body["policy"]["lifetime_actions"] == defaults["lifetime_actions_unknown_issuer"]
    assert (body["attributes"]["recoveryLevel"], body["attributes"]["recoverableDays"]) == (
        defaults["recoveryLevel"], defaults["recoverableDays"])


def test_cancellation_and_deletion_shapes(kv):
    kv("POST", "certificates/Canceled/create", RECORDED_CREATE)
    cancel = kv("PATCH", "certificates/Canceled/pending", {"cancellation_requested": True})
    _assert_shape(cancel, SHAPES["cancel"])
    assert cancel.json()["status"] == SHAPES["cancel"]["status_value"]
    after = kv("GET", "certificates/Canceled/pending")
    _assert_shape(after, SHAPES["cancel"], keys="after_keys")
    assert after.json()["status"] == SHAPES["cancel"]["after_status_value"]

    assert kv("DELETE", "certificates/Canceled/pending").status_code == 200
    _assert_error(kv("GET", "certificates/Canceled/pending"), SHAPES["pending_gone"], "Canceled")
    _assert_error(kv("GET", "deletedcertificates/Canceled"), SHAPES["deleted_missing"], "Canceled")

    deleted = kv("DELETE", "certificates/Canceled")
    shape = SHAPES["delete_never_completed"]
    _assert_shape(deleted, shape)
    assert sorted(deleted.json()["attributes"]) == sorted(shape["attributes_keys"])
    assert deleted.json()["attributes"]["enabled"] is shape["enabled"]


def test_missing_certificate_shape(kv):
    _assert_error(kv("GET", "certificates/cert-that-does-not-exist/"), SHAPES["missing"], "cert-that-does-not-exist")
