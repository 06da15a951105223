"""SMTP intake with sender authentication on against off, end to end, in one run.

    .venv/bin/python benchmarks/sender_auth.py [--messages N] [--sessions M] [--sqlite]
        [--rate R] [--steady-seconds S]

A local DNS server (tests/dns_server.py, dnslib, on 127.0.0.1) answers for N
sender domains, each with an SPF record passing 127.0.0.1, a DKIM key and a
DMARC policy of p=reject; every message is DKIM-signed by its domain, 4 KB,
one per connection over M sessions. Three runs of `intake serve` (default
configuration otherwise, a fresh database each):

  off          the SMTP listener's sender_auth = "off" (the default)
  verify cold  sender_auth = "verify", every message from a domain not yet
               looked up (each needs its SPF, DKIM key and DMARC lookups)
  verify warm  the same server again, the same domains: answers from the cache
  at R/s       then, on each server, a steady R messages a second (--rate, default
               50, each from a new domain) for --steady-seconds: well under
               saturation, so the event loop's lag there is the work's own, not a
               machine with no core to spare

Each clock runs until the last request is stored and routed (the database is
polled), as benchmarks/end_to_end.py does. Printed: the rates, their ratio to
off, the server CPU per message, the DNS questions asked, and the event loop's
lag under that load as the gateway's own `intake_event_loop_lag_seconds`
histogram saw it (every worker process scraped), against the off run's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path

from common import ROOT, free_port
from end_to_end import SERVE_ARGS, Result, intake_run, intake_server, run_client, send_each
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(ROOT))
from tests.dns_server import DkimKey, DnsServer, dkim_key  # noqa: E402 - the tests' server

BODY_LINE = b"The export has failed since this morning with a timeout, twice a minute.\r\n"


def domains(count: int, run: str) -> list[str]:
    return [f"s{i}.{run}.bench.test" for i in range(count)]


def publish(dns: DnsServer, names: list[str]) -> DkimKey:
    """SPF, DKIM and DMARC records for each domain; the key's signer's PEM."""
    key = dkim_key(1024)
    for name in names:
        dns.txt(name, "v=spf1 ip4:127.0.0.1 -all")
        dns.txt(f"_dmarc.{name}", "v=DMARC1; p=reject")
        key.publish(dns, "bench", name)
    return key


def messages(key: DkimKey, names: list[str], size: int) -> list[bytes]:
    """One signed message per domain, CRLF and dot-stuffed for DATA."""
    out = []
    body = BODY_LINE * max(1, size // len(BODY_LINE))
    for i, name in enumerate(names):
        raw = (f"From: Customer <customer@{name}>\r\nTo: support@localhost\r\n"
               f"Subject: Export fails {i}\r\nMessage-ID: <m{i}.{time.time_ns()}@{name}>\r\n"
               f"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n\r\n").encode() + body
        signed = key.sign(raw, "bench", name)
        out.append(b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                            for line in signed.split(b"\r\n")[:-1]))
    return out


def send(port: int, data: list[bytes], senders: list[str], sessions: int) -> int:
    return run_client(send_each(port, data, sessions, senders=senders))


async def _paced(port: int, data: list[bytes], senders: list[str], rate: float) -> int:
    """Each message on its own connection, started at a steady `rate` per second
    whatever the answers take (an open loop, as the internet sends)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    sending = []
    for i, (message, sender) in enumerate(zip(data, senders, strict=True)):
        await asyncio.sleep(max(0.0, began + i / rate - loop.time()))
        sending.append(asyncio.create_task(send_each(port, [message], 1, senders=[sender])))
    return sum(await asyncio.gather(*sending))


def paced(port: int, data: list[bytes], senders: list[str], rate: float) -> int:
    return run_client(_paced(port, data, senders, rate))


Histogram = dict[str, float]  # "le" bound (as text) -> count, plus "sum" and "count"


def lag(metrics_port: int, processes: int) -> Histogram:
    """The loop-lag histogram of every worker process, summed."""
    seen: Histogram = {}
    for port in range(metrics_port, metrics_port + processes):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        except OSError:
            continue
        for family in text_string_to_metric_families(text.decode()):
            if family.name != "intake_event_loop_lag_seconds":
                continue
            for sample in family.samples:
                key = (sample.labels["le"] if sample.name.endswith("_bucket")
                       else sample.name.rsplit("_", 1)[1])
                seen[key] = seen.get(key, 0.0) + sample.value
    return seen


def lag_line(name: str, before: Histogram, after: Histogram) -> str:
    """The ticks of this run alone (after minus before): mean, and the bucket
    bounds under which 99% and all of them fell."""
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    count = delta.pop("count", 0.0)
    total = delta.pop("sum", 0.0)
    if not count:
        return f"    loop lag ({name}): no ticks seen (is [metrics] listen reachable?)"
    bounds = sorted((float(le), c) for le, c in delta.items())
    p99 = next(b for b, c in bounds if c >= 0.99 * count)
    worst = next(b for b, c in bounds if c >= count)
    return (f"    event loop lag ({name}): mean {1000 * total / count:.2f} ms over"
            f" {count:.0f} ticks of 100 ms; 99% under {1000 * p99:g} ms,"
            f" all under {1000 * worst:g} ms")


def config(verify: bool, dns: DnsServer, metrics_port: int) -> str:
    text = f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
    if verify:
        text += (f'[sender_auth]\nnameservers = ["{dns.address}"]\n'
                 '[smtp.policy.smtp]\nsender_auth = "verify"\n')
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--processes", type=int, default=2,
                        help="intake serve --processes N (2: its default on this machine)")
    parser.add_argument("--sqlite", action="store_true", help="on SQLite instead of PostgreSQL")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="the steady run's messages per second (each a new domain)")
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    args = parser.parse_args()
    SERVE_ARGS[:] = ["--processes", str(args.processes)]
    n, s = args.messages, args.sessions
    dns = DnsServer()
    dns.start()
    lines = [f"SMTP, {n} DKIM-signed messages of {args.size} B, one per connection over {s}"
             f" sessions; {'SQLite' if args.sqlite else 'PostgreSQL'}, end to end"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            results: dict[str, Result] = {}
            for verify in (False, True):
                # Fresh domains per server, so "cold" is cold; 50 more warm it up.
                names = domains(n, "verify" if verify else "off")
                warm_names = domains(50, f"warmup{int(verify)}")
                key = publish(dns, names + warm_names)
                data, again = messages(key, names, args.size), messages(key, names, args.size)
                warmup = messages(key, warm_names, args.size)
                senders = [f"customer@{name}" for name in names]
                steady_names = domains(int(args.rate * args.steady_seconds),
                                       f"steady{int(verify)}")
                steady = messages(publish(dns, steady_names), steady_names, args.size)
                steady_senders = [f"customer@{name}" for name in steady_names]
                metrics_port = free_port()
                with intake_server(workdir, args.sqlite,
                                   config(verify, dns, metrics_port)) as (proc, probe, env):
                    port = int(env["SMTP_PORT"])
                    before = probe.counts()
                    send(port, warmup, [f"customer@{name}" for name in warm_names], s)
                    probe.wait_drained(before)
                    runs: list[tuple[str, list[bytes]]] = (
                        [("verify cold", data), ("verify warm", again)] if verify
                        else [("off", data)])
                    # Then a steady load well under saturation, every domain new, so
                    # the lag is the verification's and not a saturated machine's.
                    runs.append((f"{'verify' if verify else 'off'} at {args.rate:g}/s", steady))
                    for name, batch in runs:
                        dns.reset_counts()
                        lag_before = lag(metrics_port, args.processes)
                        client = (partial(paced, port, batch, steady_senders, args.rate)
                                  if batch is steady else partial(send, port, batch, senders, s))
                        result = intake_run(name, proc.pid, probe, client)
                        lag_after = lag(metrics_port, args.processes)
                        results[name] = result
                        lines.append("  " + result.line())
                        lines.append(f"    DNS questions: {dns.count()}"
                                     f" ({dns.count() / max(1, result.accepted):.1f} per message)")
                        lines.append(lag_line(name, lag_before, lag_after))
            off = results["off"]
            for name in ("verify cold", "verify warm"):
                run = results[name]
                cpu = (run.cpu / run.accepted) / (off.cpu / off.accepted)
                lines.append(f"  {name} / off: end to end {run.rate / off.rate:.2f}x,"
                             f" CPU per message {cpu:.2f}x")
    finally:
        dns.stop()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
