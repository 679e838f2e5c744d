"""What each process of the benchmark's bulk run does (:mod:`keyvault_acme.bulk` spawns it): one engine per
process, built from the environment as the CLI's is, issuing the specs it is dealt."""
from __future__ import annotations

import threading
from typing import Any, Mapping

_engine: Any = None
_lock = threading.Lock()


def issue(spec: Mapping[str, Any]) -> str:
    """Issue the certificate ``spec`` (plain data: specs cross a pipe); its serial."""
    global _engine
    from keyvault_acme.config import certificate_spec_from_dict
    from keyvault_acme.lifecycle import Engine

    with _lock:
        if _engine is None:
            _engine = Engine()
    return _engine.issue(certificate_spec_from_dict(spec)).serial
