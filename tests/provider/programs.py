"""Run a Pulumi program (a ``__main__``-style function) under ``pulumi.runtime.set_mocks``.

The SDK does everything it does in ``pulumi up`` up to the resource monitor: the dynamic provider is
dill-pickled into ``__provider`` and every input is serialised. We record what reached the monitor,
which is what the engine would store and later hand to the provider host.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pulumi
from pulumi.runtime import rpc


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]  # deserialised; secrets still wrapped
    secret_keys: set[str]

    def plain_inputs(self) -> dict[str, Any]:
        """The inputs as the engine sends them to a host that does not accept secrets (ours)."""
        return {k: rpc.unwrap_rpc_secret(v) for k, v in self.inputs.items()}


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registered: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        secret = {k for k, v in args.inputs.items() if rpc.is_rpc_secret(v)}
        self.registered.append(Registered(args.typ, args.name, dict(args.inputs), secret))
        return f"{args.name}-id", {k: v for k, v in args.inputs.items()}

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def run_program(program: Callable[[], Any], *, preview: bool = False) -> list[Registered]:
    """Run ``program`` like ``pulumi up`` (or ``preview``) would and return the resources it registered."""
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, project="keyvault-acme", stack="test", preview=preview)

    @pulumi.runtime.test
    def run():
        result = program()
        return result if result is not None else pulumi.Output.from_input(None)

    run()
    return recorder.registered
