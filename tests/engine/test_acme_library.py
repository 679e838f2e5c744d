"""The certbot `acme` API the client builds on: one major (5), and the private members it overrides are where
that major has them. When `acme` moves them, this fails before any issuance does (issue #15)."""
import inspect
from importlib.metadata import version

from acme import client, messages

from keyvault_acme.acme_client import _Network, problem_error, replace_identifier


def test_one_acme_major():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "acme>=5,<6" in pyproject["project"]["dependencies"]
    assert version("acme").split(".")[0] == "5"


def test_the_private_members_the_network_layer_overrides_are_where_acme_5_has_them():
    base = client.ClientNetwork
    # _check_response: a classmethod(response, content_type) the library calls on the instance.
    assert isinstance(inspect.getattr_static(base, "_check_response"), classmethod)
    assert list(inspect.signature(base._check_response).parameters) == ["response", "content_type"]
    assert list(inspect.signature(base._get_nonce).parameters) == ["self", "url", "new_nonce_url"]
    assert list(inspect.signature(base._add_nonce).parameters) == ["self", "response"]
    assert base.REPLAY_NONCE_HEADER == "Replay-Nonce"
    # The POST path reaches our overrides the way we rely on: a nonce per request, every response checked.
    post_once = inspect.getsource(base._post_once)
    assert "self._get_nonce(url, new_nonce_url)" in post_once
    assert "self._check_response(response, content_type=content_type)" in post_once
    net = _Network(key=None)
    assert isinstance(net._nonces, set)  # the pool our thread-safe _get_nonce pops from


def test_the_cas_problem_document_stays_on_the_raised_error():
    document = messages.Error(typ="urn:ietf:params:acme:error:rejectedIdentifier", detail="the CA's words",
                              title="Rejected", identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN,
                                                                               value="bad.example"))
    err = problem_error(document, status=400)
    assert err.document == document.to_partial_json()
    assert err.document["title"] == "Rejected" and err.status == 400
    assert replace_identifier(err, "other.example").document == err.document  # kept when the identifier is filled in
