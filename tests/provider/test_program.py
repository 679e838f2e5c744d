"""Programs under pulumi.runtime.set_mocks: what a Certificate registers, and what its provider pickles into state."""
from __future__ import annotations

import base64
import io
import pickle

import dill
import pulumi
from pulumi.dynamic.dynamic import serialize_provider

from keyvault_acme_pulumi.providers import Certificate, CertificateProvider
from tests.provider.conftest import INPUTS
from tests.provider.programs import run_program

TYPE = "pulumi-python:dynamic/keyvault_acme:Certificate"


def test_a_program_registers_the_inputs_under_the_type_token():
    def program():  # a __main__.py
        vault_url = pulumi.Output.from_input(INPUTS["vault_url"])  # e.g. from an azure-native Vault
        cert = Certificate("web", **{**INPUTS, "vault_url": vault_url}, key={"kty": "RSA", "size": 3072},
                           renewal={"days_before_expiry": 30}, revoke_on_delete=False)
        pulumi.export("secret_id", cert.secret_id)

    [registered] = run_program(program)
    assert (registered.type, registered.name) == (TYPE, "web")
    inputs = registered.plain_inputs()
    provider = inputs.pop("__provider")
    assert inputs == {**INPUTS, "key": {"kty": "RSA", "size": 3072}, "renewal": {"days_before_expiry": 30},
                      "revoke_on_delete": False}
    assert isinstance(inputs["key"]["size"], float)  # numbers cross the wire as floats; check copes
    assert registered.secret_keys == {"__provider"} and isinstance(provider, str)


def test_several_certificates_share_one_serialized_provider():
    # The host caches one provider instance per serialized string: identical strings mean one
    # instance (and one engine) serves every certificate, so its calls must be thread-safe.
    registered = run_program(lambda: [Certificate(f"c{i}", **{**INPUTS, "name": f"c{i}"}) for i in range(3)])
    assert len({r.plain_inputs()["__provider"] for r in registered}) == 1


def _pickle_of(serialized: str) -> bytes:
    return base64.b64decode(serialized)


class _GlobalsSeen(pickle.Unpickler):
    """Unpickles while noting every (module, name) the pickle imports: what the provider host will import."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(io.BytesIO(raw))
        self.seen: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str):
        self.seen.append((module, name))
        return super().find_class(module, name)


def test_the_serialized_provider_is_a_reference_with_no_credential(serialized_provider):
    raw = _pickle_of(serialized_provider)
    # By reference to an importable class, not by value: a few hundred bytes, no code, no clients.
    # And under the package's own namespace: a top-level ``providers`` module would be whatever folder of that
    # name the user's program has (a common layout), and the host would unpickle the wrong thing or fail.
    unpickler = _GlobalsSeen(raw)
    assert isinstance(unpickler.load(), CertificateProvider)
    assert unpickler.seen == [("keyvault_acme_pulumi.providers.certificate", "CertificateProvider")]
    assert len(raw) < 512
    for word in (b"credential", b"Credential", b"token", b"secret", b"azure", b"password", b"Engine"):
        assert word not in raw
    assert isinstance(dill.loads(raw), CertificateProvider)


def test_a_used_provider_pickles_the_same_plain_data(monkeypatch, serialized_provider):
    # A provider that was configured and built its engine and credential (as in the host) still
    # pickles to plain settings: nothing it holds at run time can reach the state.
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "marker-client-secret")
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-0000000000c1")
    monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-0000000000a1")
    provider = dill.loads(_pickle_of(serialized_provider))
    provider.configure(pulumi.dynamic.ConfigureRequest(pulumi.dynamic.Config(
        {"azure-native:clientId": "00000000-0000-0000-0000-0000000000c2"}, "keyvault-acme")))
    engine = provider._get_engine()
    assert provider._get_engine() is engine  # one engine per provider instance, built once
    raw = _pickle_of(serialize_provider(provider))
    assert b"marker-client-secret" not in raw and b"Credential" not in raw and b"Engine" not in raw
    assert pickle.loads(raw)._config == {"client_id": "00000000-0000-0000-0000-0000000000c2"}
