"""``make bench``: how fast one issuance is, where the time goes, and the same work done by certbot and lego.

Everything runs here, on loopback: the emulator (Key Vault, Azure DNS, Entra ID behind its proxy), real
BIND 9 and real Pebble with ``PEBBLE_VA_NOSLEEP=1`` and ``PEBBLE_WFE_NONCEREJECT=0`` (no random
validation delay, no injected badNonce: we measure clients, not Pebble's chaos settings). DNS-01 goes
through RFC 2136 to BIND for every client, so the comparison is like for like; our engine is also
measured through Azure DNS. The last line is one JSON object of medians in seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from keyvault_acme.lifecycle import PHASES
from tests import services


def median(values) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


class Recorder:
    """Collects the engine's per-phase timings (its ``on_timings`` hook) across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: list[dict[str, float]] = []

    def __call__(self, name: str, seconds) -> None:
        with self._lock:
            self.runs.append(dict(seconds))

    def take(self) -> list[dict[str, float]]:
        with self._lock:
            runs, self.runs = self.runs, []
        return runs


def phase_line(runs: list[dict[str, float]]) -> str:
    parts = []
    for phase in PHASES:
        m = median(r.get(phase, 0.0) for r in runs)
        parts.append(f"{phase} {m * 1000:6.1f}" if m is not None else f"{phase} -")
    return "  ".join(parts) + "  (ms, median)"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_engine(world, engine, recorder, args) -> dict:
    from keyvault_acme.model import KeySpec

    results: dict = {}
    # Warm-up: token, Key Vault challenge, account key + registration, directory; not measured.
    engine.issue(world.spec([world.name("rfc")], "rfc2136"))
    warm_azure = world.spec([world.name("azure")], "azure")
    warm_facts = engine.issue(warm_azure)
    recorder.take()
    results["requests_per_issue"] = count_issue_requests(world, engine, warm_azure, warm_facts, args.repeat)

    for label, zones, key in (("EC P-256, RFC 2136", "rfc2136", KeySpec()),
                              ("EC P-256, Azure DNS", "azure", KeySpec()),
                              ("RSA 2048, RFC 2136", "rfc2136", KeySpec("RSA", 2048))):
        times = [timed(lambda: engine.issue(world.spec([world.name("one")], zones, key)))
                 for _ in range(args.repeat)]
        runs = recorder.take()
        print(f"one issuance, {label:20s}: median {median(times) * 1000:7.1f} ms  "
              f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={len(times)})")
        print(f"    phases: {phase_line(runs)}")
        results[(zones, key.label)] = median(times)

    hundreds = []
    for count, workers in ((1, 1), (10, 1), (10, 4), *[(100, 4)] * args.hundreds):
        specs = [world.spec([world.name("many")], "rfc2136") for _ in range(count)]
        cpu_before = time.process_time()
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(engine.issue, specs))
        elapsed = time.perf_counter() - start
        cpu_ms = (time.process_time() - cpu_before) / count * 1000
        runs = recorder.take()
        print(f"{count:3d} certificates, {workers} at a time: {elapsed:6.2f} s  = {count / elapsed:6.1f} certificates/s"
              f"  ({cpu_ms:.1f} ms of this process's CPU each)")
        print(f"    phases: {phase_line(runs)}")
        if (count, workers) == (100, 4):
            hundreds.append(elapsed)
    results["hundred_threads"] = median(hundreds)
    print(f"100 certificates, 4 at a time in this process: median {results['hundred_threads']:.2f} s "
          f"of {len(hundreds)} runs")
    results["hundred"], results["hundred_processes"] = run_bulk(world, args)
    return results


def count_issue_requests(world, engine, warm, current, repeat: int) -> float:
    """All HTTP requests (Key Vault, Azure DNS, Entra ID, ACME) of one warm 1-name Azure DNS issuance: a new
    version of a certificate this process has issued, for a name the CA has not validated yet (a reused
    authorization would skip the challenge). Also shown: a certificate name the process has not seen."""
    from dataclasses import replace

    from tests.request_counts import counting

    counts, fresh = [], []
    with counting() as counter:
        for _ in range(max(3, repeat // 3)):
            current = engine.renew(replace(warm, dns_names=(world.name("req", "azure"),)), current=current)
            sent = counter.take()
            counts.append(len(sent))
            if os.environ.get("BENCH_SHOW_REQUESTS"):
                print("\n".join(f"  {m} {h}{p}" for m, h, p in sent))
            engine.issue(world.spec([world.name("reqnew")], "azure"))
            fresh.append(len(counter.take()))
    print(f"HTTP requests per warm 1-name Azure DNS issuance: median {median(counts)} (min {min(counts)}, "
          f"max {max(counts)}); a certificate name new to the process: median {median(fresh)} (+ the lookup of "
          f"the certificate and the vetting of its chain secret)")
    return median(counts)


def run_bulk(world, args) -> tuple[float, int]:
    """The hundred again, through keyvault_acme.bulk: spread over processes when that pays (processes_for: enough
    work, and idle CPUs), each process starting cold (imports, token, account), as `renew --due` does."""
    from keyvault_acme import bulk
    from keyvault_acme.config import spec_to_dict
    from tests import bench_worker

    processes = bulk.processes_for(100)
    times = []
    for _ in range(args.hundreds):
        specs = [spec_to_dict(world.spec([world.name("bulk")], "rfc2136")) for _ in range(100)]
        times.append(timed(lambda: bulk.run(bench_worker.issue, specs, threads=4, processes=processes)))
        print(f"100 certificates, bulk ({processes} process(es), 4 at a time in each): {times[-1]:6.2f} s")
    print(f"100 certificates, bulk: median {median(times):.2f} s of {len(times)} runs")
    return median(times), processes


def run_status(world, args) -> dict:
    """`keyvault-acme status` over 1,000 certificates in one vault (whole process), and the Key Vault requests it
    makes per certificate, counted at the emulator (the one-time 401 challenge of the first request aside)."""
    import resource
    from concurrent.futures import ThreadPoolExecutor

    from azure.identity import ClientSecretCredential
    from azure.keyvault.certificates import CertificateClient, CertificatePolicy, KeyCurveName, KeyType

    exe = Path(sys.executable).with_name("keyvault-acme")
    try:
        from tests.cli.conftest import write_stack
    except ImportError:
        return {}
    count = 1000
    vault = f"status{uuid.uuid4().hex[:8]}"
    client = CertificateClient(f"https://{vault}.vault.azure.net", ClientSecretCredential(
        world.env["AZURE_TENANT_ID"], world.env["AZURE_CLIENT_ID"], world.env["AZURE_CLIENT_SECRET"]))
    names = [f"s{i}-{world.stem}.azure.test" for i in range(count)]

    def create(i: int) -> None:  # self-signed (completes at once in the emulator): status only reads them
        policy = CertificatePolicy(issuer_name="Self", subject=f"CN={names[i]}", san_dns_names=[names[i]],
                                   key_type=KeyType.ec, key_curve_name=KeyCurveName.p_256)
        client.begin_create_certificate(f"s{i}", policy, tags={"managed-by": "keyvault-acme"}).result()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
    host, port = world.emulator.dns_address
    stack = write_stack(Path(world.tmp) / "Pulumi.status-test.yaml", vault=vault,
                        directory_url=world.pebble.directory_url, resolver=f"{host}:{port}",
                        certificates=[{"name": f"s{i}", "dns_names": [names[i]]} for i in range(count)])
    times, cpu, per_read = [], [], []
    for _ in range(args.repeat_slow):
        mark = world.emulator.admin.request_mark()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([str(exe), "--config", str(stack), "-q", "status", "--json"], env=world.env,
                              capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            print(f"keyvault-acme status failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
            return {}
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        seen = world.emulator.admin.requests(since=mark, host=f"{vault}.vault.azure.net")
        per_read.append(sum(1 for r in seen if r["status"] != 401) / count)
    print(f"keyvault-acme status, {count} certificates (whole process): median {median(times):.2f} s, "
          f"{median(cpu):.2f} s of CPU; Key Vault requests per certificate: {median(per_read):g} "
          f"(+1 authentication challenge per run)")
    return {"status_1000_s": round(median(times), 3), "status_1000_cpu_s": round(median(cpu), 3),
            "kv_requests_per_read": round(median(per_read), 3)}


def median_of_runs(label: str, argv_for: Callable[[int], list[str]], env: dict, runs: int,
                   timeout: float = 180) -> float | None:
    """Median wall time of ``runs`` whole processes (``argv_for(i)`` builds run i's command line, untimed);
    None, with the tool's last words, when a run fails."""
    times = []
    for i in range(runs):
        argv = argv_for(i)
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            print(f"{label} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
            return None
        times.append(elapsed)
    print(f"{label} (whole process): median {median(times):.3f} s  (n={len(times)})")
    return median(times)


def run_cli(world, args) -> float | None:
    """Whole process of ``keyvault-acme issue`` (a fresh interpreter, as an operator runs it)."""
    exe = Path(sys.executable).with_name("keyvault-acme")
    try:
        from tests.cli.conftest import write_stack
    except ImportError:
        return None
    if not exe.exists():
        return None
    _compile_sources()
    host, port = world.emulator.dns_address

    def argv(i: int) -> list[str]:
        stack = write_stack(Path(world.tmp) / f"Pulumi.bench{i}-test.yaml", vault=world.vault_name,
                            directory_url=world.pebble.directory_url, resolver=f"{host}:{port}",
                            certificates=[{"name": f"cli{i}", "dns_names": [world.name("cli", "azure")]}])
        return [str(exe), "--config", str(stack), "-q", "issue", f"cli{i}"]

    return median_of_runs("keyvault-acme issue", argv, world.env, args.repeat_slow, timeout=120)


def _compile_sources() -> None:
    """Byte-compile the package as installing it does (pip compiles a wheel's modules; the image has them).

    The dev install is editable: its modules are compiled when first imported and the bytecode is written
    back, unless PYTHONDONTWRITEBYTECODE is set (as on some CI hosts), when every CLI process compiled ~40
    modules from source again, ~60 ms that no installed keyvault-acme spends. Stale bytecode is ignored by
    Python (it checks the source's mtime), so this never runs old code."""
    import compileall

    root = Path(__file__).resolve().parents[1]
    for package in ("keyvault_acme", "keyvault_acme_cli", "keyvault_acme_stack"):
        compileall.compile_dir(str(root / package), quiet=1)


def run_certbot(world, args) -> float | None:
    exe = Path(sys.executable).with_name("certbot")
    if not exe.exists():
        print("certbot: not installed in the venv")
        return None
    base = Path(world.tmp) / "certbot"
    ini = base / "rfc2136.ini"
    base.mkdir(exist_ok=True)
    ini.write_text(f"dns_rfc2136_server = {world.bind.host}\ndns_rfc2136_port = {world.bind.port}\n"
                   f"dns_rfc2136_name = {world.bind.tsig_key_name}\ndns_rfc2136_secret = {world.bind.tsig_secret_b64}\n"
                   "dns_rfc2136_algorithm = HMAC-SHA256\n")
    ini.chmod(0o600)
    return median_of_runs(
        "certbot + certbot-dns-rfc2136",
        lambda i: [str(exe), "certonly", "--non-interactive", "--agree-tos", "--register-unsafely-without-email",
                   "--server", world.pebble.directory_url, "--dns-rfc2136", "--dns-rfc2136-credentials", str(ini),
                   "--dns-rfc2136-propagation-seconds", "0", "--key-type", "ecdsa",
                   "--config-dir", str(base / "config"), "--work-dir", str(base / "work"),
                   "--logs-dir", str(base / "logs"), "-d", world.name("certbot")],
        world.env, args.repeat_slow)


def run_lego(world, args) -> float | None:
    exe = shutil.which("lego") or "/usr/bin/lego"
    if not Path(exe).exists():
        print("lego: not installed")
        return None
    env = {**world.env, "LEGO_CA_CERTIFICATES": world.pebble.tls_ca_pem_path,
           "RFC2136_NAMESERVER": world.bind.server, "RFC2136_TSIG_KEY": world.bind.tsig_key_name,
           "RFC2136_TSIG_SECRET": world.bind.tsig_secret_b64, "RFC2136_TSIG_ALGORITHM": "hmac-sha256.",
           "RFC2136_PROPAGATION_TIMEOUT": "10", "RFC2136_POLLING_INTERVAL": "1"}
    return median_of_runs(
        "lego 4.9 rfc2136",
        lambda i: [exe, "--server", world.pebble.directory_url, "--email", "bench@example.test", "--accept-tos",
                   "--dns", "rfc2136", "--dns.resolvers", world.bind.server, "--dns.disable-cp",
                   "--key-type", "ec256", "--path", str(Path(world.tmp) / "lego"), "--domains", world.name("lego"),
                   "run"],
        env, args.repeat_slow)


class World:
    def __init__(self, emulator, bind, pebble, tsig_ref, vault_name: str, env: dict, tmp: str) -> None:
        self.emulator, self.bind, self.pebble, self.tsig_ref = emulator, bind, pebble, tsig_ref
        self.vault_name, self.env, self.tmp = vault_name, env, tmp
        self.vault_url = f"https://{vault_name}.vault.azure.net"
        self.stem = uuid.uuid4().hex[:6]
        self._n = 0
        self._lock = threading.Lock()

    def name(self, label: str, zone: str = "rfc2136") -> str:
        with self._lock:
            self._n += 1
            n = self._n
        return f"{label}{n}-{self.stem}.{services.BIND_ZONE if zone != 'azure' else 'azure.test'}"

    def spec(self, names, zones: str, key=None):
        from keyvault_acme.model import AcmeAccount, AzureDnsZone, CertificateSpec, KeySpec, Rfc2136Zone

        names = [n.replace(f".{services.BIND_ZONE}", ".azure.test") if zones == "azure" else n for n in names]
        if zones == "azure":
            zone_list = (AzureDnsZone(services.azure_zone_id("azure.test")),)
            host, port = self.emulator.dns_address
            resolvers = (f"{host}:{port}",)
        else:
            zone_list = (Rfc2136Zone(services.BIND_ZONE, self.bind.server, self.bind.tsig_key_name, self.tsig_ref),)
            resolvers = ()  # BIND is the zone's only authoritative server (the provider says so)
        return CertificateSpec(vault_url=self.vault_url, name=f"b-{uuid.uuid4().hex[:12]}", dns_names=tuple(names),
                               zones=zone_list, acme=AcmeAccount(directory_url=self.pebble.directory_url),
                               key=key or KeySpec(), resolvers=resolvers, propagation_timeout_s=30)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="single issuances per variant (median)")
    parser.add_argument("--repeat-slow", type=int, default=3, help="runs of certbot, lego and the CLI (median)")
    parser.add_argument("--hundreds", type=int, default=3, help="runs of 100 certificates 4 at a time (median)")
    parser.add_argument("--skip-peers", action="store_true", help="do not run certbot and lego")
    parser.add_argument("--pebble", choices=("current", "2.4"), default="current",
                        help="the CA: the current Pebble (2.10, the default) or Debian 12's 2.4, to tell the CA's "
                             "share of a figure from the engine's")
    args = parser.parse_args(argv)

    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    from emulator.pebble import PEBBLE_24_BINARY, PEBBLE_BINARY, Pebble
    from keyvault_acme.lifecycle import Engine
    from keyvault_acme.model import SecretRef

    tmp = tempfile.mkdtemp(prefix="kvacme-bench-")
    try:
        with services.emulator_server(own_process=True) as emulator, \
                services.bind_server(forward_zones={z: emulator.dns_address for z in services.AZURE_ZONES}) as bind, \
                Pebble(dns_server=bind.address, nonce_reject_percent=0,
                       binary=PEBBLE_24_BINARY if args.pebble == "2.4" else PEBBLE_BINARY) as pebble:
            bundle = services.write_ca_bundle(Path(tmp) / "bundle.pem",
                                              [pebble.tls_ca_pem_path, emulator.ca_bundle_path])
            app = emulator.admin.add_root_client(name="bench")
            env = {k: v for k, v in os.environ.items()
                   if k not in ("HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE")}
            env.update(emulator.environ(bundle), AZURE_TENANT_ID=app["tenant_id"], AZURE_CLIENT_ID=app["client_id"],
                       AZURE_CLIENT_SECRET=app["secret"])
            os.environ.clear()
            os.environ.update(env)
            vault_name = f"bench{uuid.uuid4().hex[:8]}"
            vault_url = f"https://{vault_name}.vault.azure.net"
            credential = ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"])
            SecretClient(vault_url, credential).set_secret("bind-tsig", bind.tsig_secret_b64)
            world = World(emulator, bind, pebble, SecretRef(f"{vault_url}/secrets/bind-tsig"), vault_name, env, tmp)
            recorder = Recorder()
            engine = Engine(credential, on_timings=recorder)
            print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the start")
            print(f"Pebble {args.pebble} {pebble.directory_url} (PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0), BIND 9 {bind.server}, "
                  f"emulator {emulator.proxy_url}")
            results = run_engine(world, engine, recorder, args)
            cli_s = run_cli(world, args)
            status = run_status(world, args)
            certbot_s = lego_s = None
            if not args.skip_peers:
                certbot_s = run_certbot(world, args)
                lego_s = run_lego(world, args)
            issue_s = results[("rfc2136", "EC P-256")]
            if certbot_s:
                print(f"certbot / keyvault-acme (in-process, EC P-256): {certbot_s / issue_s:.0f}x")
            if lego_s:
                print(f"lego / keyvault-acme (in-process, EC P-256): {lego_s / issue_s:.0f}x")
            summary = {"issue_s": round(issue_s, 4), "issue_rsa_s": round(results[("rfc2136", "RSA 2048")], 4),
                       "cli_s": round(cli_s, 3) if cli_s else None,
                       "certbot_s": round(certbot_s, 3) if certbot_s else None,
                       "lego_s": round(lego_s, 3) if lego_s else None,
                       "hundred_s": round(results["hundred"], 3),
                       "hundred_processes": results["hundred_processes"],
                       "hundred_threads_s": round(results["hundred_threads"], 3),
                       **status,
                       "requests_per_issue": results["requests_per_issue"],
                       # What else ran on the machine: a shared host inflates every wall time above.
                       "load_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(), "pebble": args.pebble}
            print(json.dumps(summary))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
