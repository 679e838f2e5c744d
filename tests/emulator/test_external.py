"""`python -m emulator` in its own process, driven through EmulatorProcess as the benchmark drives it."""
import socket

import dns.message
import dns.query
import dns.rdatatype

from emulator.external import EmulatorProcess


def test_emulator_process_serves_admin_and_dns_then_stops_completely():
    emu = EmulatorProcess().start()
    try:
        zone = emu.admin.add_zone("external.test", "00000000-0000-0000-0000-00000000e001", "rg")
        assert zone["name"] == "external.test"
        host, port = emu.dns_address
        answer = dns.query.udp(dns.message.make_query("external.test", dns.rdatatype.SOA), host, port=port, timeout=2)
        assert answer.answer and answer.answer[0].rdtype == dns.rdatatype.SOA
        assert emu.environ()["HTTPS_PROXY"] == emu.proxy_url
        proxy_port = int(emu.proxy_url.rsplit(":", 1)[1])
    finally:
        emu.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", proxy_port)) != 0, "the emulator process is still listening"
