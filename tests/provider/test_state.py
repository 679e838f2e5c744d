"""The resource's state: facts survive the round trip through outputs, and only public facts are outputs."""
import dataclasses

from keyvault_acme.config import certificate_spec_from_dict
from keyvault_acme_pulumi.providers.state import OUTPUTS, PROVIDER_INPUTS, facts_from_outputs, facts_to_outputs, split_state
from tests.provider.test_resource_diff import SPEC, facts


def test_facts_round_trip_through_outputs():
    f = facts(revoked_reason="superseded", enabled=False)
    outs = facts_to_outputs(f, certificate_spec_from_dict(SPEC))
    assert facts_from_outputs(outs) == f
    assert outs["certificate_id"] == f.id and outs["vault_tags"] == dict(f.tags)
    assert outs["not_after"] == f.not_after.isoformat()
    # fraction_remaining 0.25 of a 90-day certificate: due 67.5 days after not_before
    assert outs["renew_after"] == (f.not_before + (f.not_after - f.not_before) * 0.75).isoformat()


def test_every_fact_is_an_output_and_no_input_is():
    fields = {f.name for f in dataclasses.fields(type(facts()))}
    assert len(OUTPUTS) == len(fields) + 1  # + renew_after
    assert not set(OUTPUTS) & (set(SPEC) | set(PROVIDER_INPUTS))


def test_state_without_facts_reads_as_no_certificate():
    assert facts_from_outputs(SPEC) is None
    assert split_state({**SPEC, "certificate_id": "x", "__provider": "p"}) == SPEC
