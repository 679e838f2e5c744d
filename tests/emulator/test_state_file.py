"""The emulator's state file: a faithful copy of the state, and saving that stays cheap as the state grows."""

import json
from dataclasses import dataclass, field

from emulator.state import WRITE_SHARE, StateFile, plain


@dataclass
class Leaf:
    name: str
    tags: dict = field(default_factory=dict)


def test_plain_is_a_deep_json_copy_of_dataclasses():
    leaf = Leaf("a", {"k": "v"})
    copy = plain({"items": {"a": leaf}, "list": [Leaf("b")]})
    assert copy == {"items": {"a": {"name": "a", "tags": {"k": "v"}}}, "list": [{"name": "b", "tags": {}}]}
    leaf.tags["k"] = "changed"
    assert copy["items"]["a"]["tags"] == {"k": "v"}


def test_state_round_trips_through_the_file(tmp_path):
    state = {"vaults": {"v": {"certificates": {"c": {"versions": ["1", "2"]}}}}, "version": 1}
    StateFile(tmp_path, lambda: state).flush()
    assert json.loads((tmp_path / "state.json").read_text()) == state
    assert (tmp_path / "state.json").stat().st_mode & 0o077 == 0  # it holds private keys
    assert StateFile(tmp_path, dict).load() == state


def test_the_pause_between_writes_grows_with_their_cost(tmp_path):
    now = [0.0]

    def clock():
        return now[0]

    def snapshot(cost):
        def take():
            now[0] += cost
            return {"big": "state"}
        return take

    cheap = StateFile(tmp_path, snapshot(0.001), interval=0.2, clock=clock)
    cheap.flush()
    assert cheap.pause() == 0.2
    costly = StateFile(tmp_path, snapshot(0.1), interval=0.2, clock=clock)
    costly.flush()
    assert costly.pause() == 0.1 / WRITE_SHARE == 2.0
