"""Problem documents (RFC 8555 6.7) -> typed errors, chain choice and order polling: no network."""
import time
from datetime import datetime, timedelta, timezone

import josepy as jose
import pytest
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec

from keyvault_acme import acme_client, errors
from keyvault_acme.acme_client import AcmeClient, Order, _choose_chain, problem_error
from keyvault_acme.retry import Backoff, Waiter


def problem(code, detail="the CA's words", **kw):
    return messages.Error(typ=f"urn:ietf:params:acme:error:{code}", detail=detail, **kw)


@pytest.mark.parametrize("code, cls", [
    ("rateLimited", errors.RateLimited), ("unauthorized", errors.AcmeUnauthorized), ("dns", errors.AcmeDnsProblem),
    ("caa", errors.AcmeCaaProblem), ("rejectedIdentifier", errors.RejectedIdentifier), ("badCSR", errors.BadCsr),
    ("serverInternal", errors.AcmeError),
])
def test_problem_types_map_to_classes_keeping_the_cas_words(code, cls):
    err = problem_error(problem(code))
    assert type(err) is cls
    assert "the CA's words" in str(err) and err.problem_type.endswith(code)


def test_rate_limit_carries_the_retry_after_time():
    before = datetime.now(timezone.utc)
    err = problem_error(problem("rateLimited"), status=429, retry_after="3600")
    assert isinstance(err, errors.RateLimited) and err.retryable
    assert before + timedelta(seconds=3590) < err.retry_after < before + timedelta(seconds=3610)
    assert "retry after" in str(err)


def test_subproblems_name_the_identifier():
    sub = problem("caa", "CAA record forbids issuance",
                  identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="www.example.com"))
    err = problem_error(messages.Error(typ="urn:ietf:params:acme:error:compound", detail="several problems",
                                       subproblems=(sub,)))
    assert isinstance(err, errors.AcmeCaaProblem)
    assert err.identifier == "www.example.com" and "CAA record forbids" in str(err)


def _cert_pem(subject_cn, issuer_cn):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_preferred_chain_is_chosen_by_the_top_certificates_issuer():
    leaf = _cert_pem("www.example.com", "Intermediate")
    default = leaf + _cert_pem("Intermediate", "Root X1")
    alternate = leaf + _cert_pem("Intermediate", "Root X2")
    assert _choose_chain([default, alternate], "Root X2") == alternate
    assert _choose_chain([default, alternate], "Root X1") == default
    assert _choose_chain([default, alternate], "No Such Root") == default
    assert _choose_chain([default, alternate], None) == default


# -- polling --------------------------------------------------------------------------------------------------
def _client_answering(statuses):
    """An AcmeClient whose order URL answers the given statuses, one per poll."""
    client = AcmeClient.__new__(AcmeClient)  # no network: only _poll is exercised
    client.poll_backoff = Backoff(initial=0.005, factor=2.0, cap=5.0, jitter=0)
    statuses = list(statuses)

    class Response:
        headers: dict = {}

        def __init__(self, status):
            self.status = status

        def json(self):
            return {"status": self.status, "identifiers": [], "authorizations": [],
                    "finalize": "https://ca.example/finalize/1"}

    client._get = lambda url, what, deadline: Response(statuses.pop(0))
    return client


def _order_in(status):
    return Order(url="https://ca.example/order/1", status=status, identifiers=(), authorizations=(),
                 finalize="https://ca.example/finalize/1")


@pytest.fixture
def sleeps(monkeypatch):
    recorded = []

    class RecordingWaiter(Waiter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, sleep=recorded.append, **kwargs)

    monkeypatch.setattr(acme_client, "Waiter", RecordingWaiter)
    return recorded


def test_a_pending_order_is_polled_at_once(sleeps):
    order = _client_answering(["ready"])._poll(_order_in("pending"), {"pending"}, "wait", time.monotonic() + 5)
    assert order.status == "ready" and sleeps == []


def test_a_processing_order_is_given_a_moment_before_the_first_poll(sleeps):
    client = _client_answering(["processing", "valid"])
    order = client._poll(_order_in("processing"), {"processing"}, "wait", time.monotonic() + 5)
    assert order.status == "valid" and sleeps == [0.005, 0.01]


def test_retry_after_from_the_ca_paces_the_first_poll(sleeps):
    client = _client_answering(["valid"])
    client._poll(_order_in("processing"), {"processing"}, "wait", time.monotonic() + 5, retry_after=2.0)
    assert sleeps == [2.0]


def test_a_learnt_wait_is_taken_as_it_is_before_the_first_poll_and_the_backoff_starts_after_it(sleeps):
    # A CA that issues in about 1 ms is first asked after about 1 ms, not after the backoff's first 5 ms.
    client = _client_answering(["processing", "valid"])
    order = client._poll(_order_in("processing"), {"processing"}, "wait", time.monotonic() + 5, first_wait=0.001)
    assert order.status == "valid" and sleeps == [0.001, 0.005]


def test_the_cas_retry_after_wins_over_a_learnt_wait(sleeps):
    client = _client_answering(["valid"])
    client._poll(_order_in("processing"), {"processing"}, "wait", time.monotonic() + 5, retry_after=2.0,
                 first_wait=0.001)
    assert sleeps == [2.0]


def test_giving_up_an_order_deactivates_only_its_pending_authorizations():
    # Valid ones stay for reuse by the next order; answered (processing, invalid) ones are the CA's to settle.
    client = AcmeClient("https://ca.example/dir", jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())))
    states = {f"https://ca.example/authz/{s}": s for s in ("valid", "pending", "invalid", "processing")}
    posted = []

    class Response:
        def __init__(self, body):
            self.body = body

        def json(self):
            return self.body

    def authz(url):
        return {"status": states[url], "identifier": {"type": "dns", "value": url.rsplit("/", 1)[1] + ".example"},
                "challenges": []}

    client._get = lambda url, what, deadline: Response(authz(url))
    client._post = lambda url, body, what, deadline: posted.append((url, body.json_dumps()))
    order = Order(url="https://ca.example/order/1", status="pending", identifiers=(),
                  authorizations=tuple(states), finalize="https://ca.example/finalize/1")
    assert client.deactivate_pending(order, deadline=time.monotonic() + 5) == ["pending.example"]
    assert posted == [("https://ca.example/authz/pending", '{"status": "deactivated"}')]
