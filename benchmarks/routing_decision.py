"""Decision time per message: 1,000 rules, a 20 KB message.

Prints figures; it is not a test. Run: .venv/bin/python benchmarks/routing_decision.py
The rules are a plausible desk's mix: mostly address and sender rules, then
subject and body phrases, headers, regexes, custom fields and combinations.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routing.api import Attachment, RoutingInput, decide, load_rules  # noqa: E402

RULES = 1000
MESSAGE_BYTES = 20_000
WORDS = (
    "the printer network invoice password account email server access please help thanks "
    "regards issue problem working since morning today team office laptop screen meeting "
    "calendar report monthly numbers attached file shared drive folder update version"
).split()


def config(n: int, rng: random.Random) -> str:
    queues = [f"q{i}" for i in range(20)]
    out = [
        "[routing]",
        'default_queue = "q0"',
        "[routing.lists]",
        'vip = ["ceo@example.com", "board.example.org"]',
        'blocked = ["spam.example"]',
        "[routing.business_hours]",
        'timezone = "Europe/Paris"',
    ]
    for i in range(30):
        out += [
            "[[component]]",
            f'name = "comp{i}"',
            f'aliases = ["component {i}", "c{i}x"]',
            f'queue = "{rng.choice(queues)}"',
        ]
    for i in range(n):
        kind = i % 20
        q = rng.choice(queues)
        if kind < 8:
            when = f'{{ to = "team{i}@example.com" }}'
        elif kind < 11:
            when = f'{{ from_domain = ["client{i}.example", "client{i}.example.net"] }}'
        elif kind < 14:
            when = f'{{ subject.contains = "topic{i}" }}'
        elif kind < 16:
            when = f'{{ body.contains = "phrase number {i}" }}'
        elif kind == 16:
            when = f'{{ header.x-customer-id = "cust-{i}" }}'
        elif kind == 17:
            when = (
                f'{{ any = [{{ subject.matches = "(?i)\\\\bcase-{i}\\\\b" }}, '
                f'{{ body.contains = "ticket {i}" }}] }}'
            )
        elif kind == 18:
            when = (
                f'{{ channel = "email", not = {{ on_list = "vip" }}, '
                f'attachment_type = "application/x-{i}" }}'
            )
        else:
            when = f'{{ field.contract_level.greater = {1000 + i}, class.type = "complaint" }}'
        out += ["[[rule]]", f'name = "rule {i}"', f"when = {when}", f'then = {{ queue = "{q}" }}']
    # A few that hit, as real configs have.
    out += [
        "[[rule]]",
        'name = "vip tag"',
        'when = { on_list = "vip" }',
        'then = { tags = ["vip"], priority = "P2" }',
    ]
    out += [
        "[[rule]]",
        'name = "invoices"',
        'when = { body.contains = "invoice" }',
        'then = { queue = "q1", category = "billing" }',
    ]
    return "\n".join(out), queues


def message(rng: random.Random) -> RoutingInput:
    body = " ".join(rng.choice(WORDS) for _ in range(MESSAGE_BYTES // 5))[:MESSAGE_BYTES]
    return RoutingInput(
        received_at=datetime(2026, 11, 30, 10, 30, tzinfo=UTC),
        to=("support@example.com",),
        cc=("someone@example.com",),
        envelope_to=("support@example.com",),
        sender="ceo@example.com",
        subject="Monthly report numbers are wrong since the last update",
        new_text=body,
        text=body,
        headers=(("X-Mailer", "bench"), ("Message-ID", "<1@example.com>")),
        attachments=(Attachment(name="report.pdf", content_type="application/pdf"),),
        custom_fields=(("contract_level", "3"),),
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    rng = random.Random(4)
    text, queues = config(RULES, rng)
    started = time.perf_counter()
    rules = load_rules(text, "bench.toml", queues)
    load_ms = (time.perf_counter() - started) * 1000
    item = message(rng)
    decide(rules, item)  # warm: language model, RE2 sets
    samples = []
    for _ in range(1000):
        t0 = time.perf_counter()
        decision = decide(rules, item)
        samples.append((time.perf_counter() - t0) * 1000)
    stored = []
    for _ in range(1000):
        t0 = time.perf_counter()
        decide(rules, item).to_dict(every_rule=False)
        stored.append((time.perf_counter() - t0) * 1000)
    explained = []
    for _ in range(50):
        t0 = time.perf_counter()
        decide(rules, item).to_dict()
        explained.append((time.perf_counter() - t0) * 1000)
    print(
        f"rules: {len(rules.rules)}  message: {len(item.new_text)} chars  "
        f"matched: {', '.join(decision.matched)}"
    )
    print(f"load + compile: {load_ms:.0f} ms")
    print(
        f"decide:            median {statistics.median(samples):.3f} ms  "
        f"p99 {percentile(samples, 99):.3f} ms  ({len(samples)} runs)"
    )
    print(
        f"decide + stored explanation (hits only):  median {statistics.median(stored):.3f} ms  "
        f"p99 {percentile(stored, 99):.3f} ms  ({len(stored)} runs; what the pipeline keeps)"
    )
    print(
        f"decide + to_dict:  median {statistics.median(explained):.3f} ms  "
        f"p99 {percentile(explained, 99):.3f} ms  ({len(explained)} runs; "
        "every rule explained, as intake route --explain does)"
    )


if __name__ == "__main__":
    main()
