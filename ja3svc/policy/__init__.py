"""Pure verdict engine of the Dovecot policy service (no IO; see ``engine.RULES``)."""

from ja3svc.policy.engine import RULES, PolicyConfig, Verdict, evaluate, parse_action
from ja3svc.policy.facts import (
    Action,
    ConnectionLookup,
    ConnectionPeer,
    CorrelatedFingerprints,
    FingerprintRef,
    LabelFact,
    NoConnectionLookup,
    PolicyInputs,
    Reputation,
    RequestFacts,
    Stage,
    UserHistory,
    network_of,
)

__all__ = [
    "RULES",
    "Action",
    "ConnectionLookup",
    "ConnectionPeer",
    "CorrelatedFingerprints",
    "FingerprintRef",
    "LabelFact",
    "NoConnectionLookup",
    "PolicyConfig",
    "PolicyInputs",
    "Reputation",
    "RequestFacts",
    "Stage",
    "UserHistory",
    "Verdict",
    "evaluate",
    "network_of",
    "parse_action",
]
