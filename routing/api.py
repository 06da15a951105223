"""What the gateway calls, in one import (`routing/__init__.py` stays empty).

from routing.api import check_config, decide, dump_rules, load_rules, RoutingInput

rules = load_rules(text, path, queues=["general", "billing"])  # InvalidRulesError
rules, issues = read_routing(doc, text, path, queues)  # the same, from a parsed file
warm_up(rules)  # optional: compile and load the language model before traffic
decision = decide(rules, RoutingInput(received_at=now, to=("billing@example.com",)))
# or in two steps, the language first (the gateway does a batch's at once):
decision = decide(rules, item, detector=read_language(rules, item))
decision.queue, decision.to_dict(), decision.explain()
"""

from __future__ import annotations

from routing.classify import Classification, Cue, Guess
from routing.config import ConfigIssue, InvalidRulesError, check_config, load_rules, read_routing
from routing.config.dump import dump_rules
from routing.decision import Decision, RuleResult
from routing.engine import compile_rules, decide, read_language
from routing.inputs import Attachment, FieldValue, RoutingInput, SenderAuth, SpamOpinion
from routing.language import LanguageDetector, default_detector
from routing.rules import RuleSet


def warm_up(rules: RuleSet) -> None:
    """Compile the rules and load the language model now (about a second),
    so the first message after start-up or a reload does not wait for them."""
    compile_rules(rules)
    default_detector(rules.settings.languages).detect("warm up the language model")


__all__ = [
    "Attachment",
    "Classification",
    "ConfigIssue",
    "Cue",
    "Decision",
    "FieldValue",
    "Guess",
    "InvalidRulesError",
    "LanguageDetector",
    "RoutingInput",
    "RuleResult",
    "RuleSet",
    "SenderAuth",
    "SpamOpinion",
    "check_config",
    "compile_rules",
    "decide",
    "dump_rules",
    "load_rules",
    "read_language",
    "read_routing",
    "warm_up",
]
