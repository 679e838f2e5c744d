"""Drive the real Pulumi dynamic-provider host over gRPC, the way the Pulumi engine does.

:class:`ProviderHost` starts ``python -u -m pulumi.dynamic`` in a fresh process (from a directory that
is not the repository), reads the port it prints, and offers one method per RPC. Properties go over
the wire as ``rpc.serialize_properties`` makes them; ``__provider`` is the string the program
registered (see :func:`serialized_provider`) and unknowns are ``rpc.UNKNOWN``, as in a preview.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import grpc
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

PROVIDER_KEY = "__provider"
TYPE = "pulumi-python:dynamic/keyvault_acme:Certificate"


def to_struct(props: Mapping[str, Any]):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(dict(props), {}))
    finally:
        loop.close()


def from_struct(struct, keep_unknowns: bool = False) -> dict[str, Any]:
    return rpc.deserialize_properties(struct, keep_unknowns)


# Below pytest's 300 s timeout: an RPC that hangs fails with the host's last words instead of a bare timeout.
RPC_TIMEOUT_S = 240


class ProviderError(Exception):
    """The host answered an RPC with an error (the provider raised), or did not answer in time."""

    def __init__(self, error: grpc.RpcError, stderr_tail: str = "") -> None:
        self.code, self.details = error.code(), error.details()
        super().__init__(f"{self.code}: {self.details}" + (f"\nprovider host stderr (last lines):\n{stderr_tail}"
                                                           if stderr_tail else ""))


class ProviderHost:
    def __init__(self, cwd: Path, env: Mapping[str, str] | None = None, project: str = "keyvault-acme") -> None:
        self.cwd, self.project = Path(cwd), project
        self.env = {**os.environ, **(env or {}), "PULUMI_PROJECT": project}
        self.stderr_path = self.cwd / "provider-host.stderr"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "ProviderHost":
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.dynamic"], cwd=self.cwd, env=self.env,
                                        stdout=subprocess.PIPE, stderr=self._stderr)
        port = self._read_port(deadline=time.monotonic() + 60)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        return self

    def _read_port(self, deadline: float) -> int:
        assert self.process and self.process.stdout
        box: list[bytes] = []
        reader = threading.Thread(target=lambda: box.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if not box or not box[0].strip():
            raise RuntimeError(f"provider host printed no port; stderr: {self.stderr()}")
        return int(box[0])

    def __exit__(self, *exc) -> None:
        self.channel.close()
        assert self.process
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def _call(self, method: str, request):
        try:
            return getattr(self.stub, method)(request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as e:
            tail = "\n".join(self.stderr().splitlines()[-30:]) if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED else ""
            raise ProviderError(e, tail) from None

    # -- one method per RPC, in the engine's shapes --------------------------------------------------
    def configure(self, config: Mapping[str, Any]) -> provider_pb2.ConfigureResponse:
        return self._call("Configure", provider_pb2.ConfigureRequest(
            args=to_struct(config), acceptSecrets=True, acceptResources=True))

    def check(self, olds: Mapping[str, Any], news: Mapping[str, Any], urn: str = "") -> tuple[dict, list]:
        r = self._call("Check", provider_pb2.CheckRequest(urn=urn, type=TYPE, olds=to_struct(olds), news=to_struct(news)))
        return from_struct(r.inputs, keep_unknowns=True), [(f.property, f.reason) for f in r.failures]

    def diff(self, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> provider_pb2.DiffResponse:
        return self._call("Diff", provider_pb2.DiffRequest(id=id_, type=TYPE, olds=to_struct(olds),
                                                            news=to_struct(news)))

    def create(self, props: Mapping[str, Any]) -> tuple[str, dict]:
        r = self._call("Create", provider_pb2.CreateRequest(type=TYPE, properties=to_struct(props)))
        return r.id, from_struct(r.properties)

    def read(self, id_: str, props: Mapping[str, Any], inputs: Mapping[str, Any] | None = None) -> tuple[str, dict]:
        r = self._call("Read", provider_pb2.ReadRequest(id=id_, type=TYPE, properties=to_struct(props),
                                                         inputs=to_struct(inputs or {})))
        return r.id, from_struct(r.properties)

    def update(self, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict:
        r = self._call("Update", provider_pb2.UpdateRequest(id=id_, type=TYPE, olds=to_struct(olds),
                                                             news=to_struct(news)))
        return from_struct(r.properties)

    def delete(self, id_: str, props: Mapping[str, Any]) -> None:
        self._call("Delete", provider_pb2.DeleteRequest(id=id_, type=TYPE, properties=to_struct(props)))


def changes(diff: provider_pb2.DiffResponse) -> str:
    """ "none", "update" or "replace", as the engine would read the DiffResponse."""
    if diff.changes == provider_pb2.DiffResponse.DIFF_NONE:
        return "none"
    if diff.changes == provider_pb2.DiffResponse.DIFF_SOME:
        return "replace" if list(diff.replaces) else "update"
    return "unknown"
