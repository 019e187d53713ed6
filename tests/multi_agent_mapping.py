"""Policy mapping functions the multi-policy tests name as ``tests.multi_agent_mapping:...``."""

from __future__ import annotations


def by_parity(agent: str) -> str:
    """``agent_<i>`` plays ``even`` or ``odd`` by the parity of ``i``."""
    return "even" if int(agent.rsplit("_", 1)[1]) % 2 == 0 else "odd"


def to_missing(agent: str) -> str:
    return "nobody"


def not_a_string(agent: str) -> int:
    return 3


def raises(agent: str) -> str:
    raise KeyError(agent)


def by_team(agent: str) -> str:
    """mpe2's simple_adversary / simple_tag teams: ``adversary_<i>`` and the others."""
    return "adversaries" if agent.startswith("adversary") else "good"
