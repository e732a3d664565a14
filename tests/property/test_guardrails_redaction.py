"""Guardrails, as properties: whatever the text and the redact rules, nothing a rule
matches survives in the text the core records, and a text no rule matches is recorded
as it is, with no trip. (Patterns are drawn from an alphabet the replacement does not
use, so a redaction cannot form a new match with its neighbours.)"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from agents.guardrails import Guardrail, check

ALPHABET = "0123456789xyz-"
patterns = st.text(alphabet=ALPHABET, min_size=1, max_size=4)
texts = st.text(alphabet=ALPHABET + " abc", max_size=80)


def _rules(subs: list[str], regexes: list[str]) -> list[Guardrail]:
    rules = [
        Guardrail(name=f"s{i}", on="input", kind="substring", pattern=p, action="redact")
        for i, p in enumerate(subs)
    ]
    rules += [
        Guardrail(
            name=f"r{i}", on="input", kind="regex", pattern=re.escape(p) + "+", action="redact"
        )
        for i, p in enumerate(regexes)
    ]
    return rules


@given(st.lists(patterns, max_size=4), st.lists(patterns, max_size=3), texts)
def test_no_redacted_match_survives(subs: list[str], regexes: list[str], text: str) -> None:
    verdict = check(_rules(subs, regexes), "input", text)
    assert verdict.blocked is None
    for p in subs + regexes:
        assert p not in verdict.text
    assert (verdict.text == text) == (not verdict.trips)


@given(st.lists(patterns, min_size=1, max_size=4), st.text(alphabet=" abc", max_size=80))
def test_a_text_no_rule_matches_is_recorded_as_it_is(subs: list[str], text: str) -> None:
    verdict = check(_rules(subs, subs), "input", text)
    assert (verdict.text, verdict.trips, verdict.blocked) == (text, (), None)
