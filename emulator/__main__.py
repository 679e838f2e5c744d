"""`python -m emulator`: run the local Azure until SIGTERM or SIGINT."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import threading

from .server import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--proxy-port", type=int, default=0, help="HTTPS CONNECT proxy + admin API port (0: any free)")
    parser.add_argument("--dns-port", type=int, default=0, help="authoritative DNS port, UDP and TCP (0: any free)")
    parser.add_argument("--state-dir", help="directory that keeps state and the test CA across restarts")
    parser.add_argument("--ca-bundle-out", help="also copy the test CA certificate (PEM) to this path")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Emulator(args.state_dir, args.proxy_port, args.dns_port, args.host) as emulator:
        if args.ca_bundle_out:
            shutil.copyfile(emulator.ca_bundle_path, args.ca_bundle_out)
        where = {"proxy_url": emulator.proxy_url, "admin_url": emulator.proxy_url + "/admin",
                 "ca_bundle_path": args.ca_bundle_out or emulator.ca_bundle_path,
                 "dns_address": list(emulator.dns_address) if emulator.dns_address else None,
                 "state_dir": args.state_dir}
        print(json.dumps(where), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
