"""The attribute registry: which `:names:` a rule may use, and the kind of each.

Rules are checked against the registry when they are saved, so an unknown attribute or a type
mismatch is an error the merchant sees at once, never a surprise during a payment. The default
registry is the risk feature vocabulary (`bastionpay.risk.feature_schema`) with finer kinds for the
identifiers that named lists hold (emails, IPs, fingerprints …), plus the attributes the rules need
that are not model features yet (listed in `EXTRA_ATTRIBUTES`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from bastionpay.risk import feature_schema
from bastionpay.risk.rules.values import ValueKind

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    name: str
    kind: ValueKind
    description: str = ""
    # For closed vocabularies (`card_funding`, `risk_level`): a literal outside it is a typo that
    # would make the rule silently never match, so it is rejected when the rule is saved.
    allowed: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"invalid attribute name {self.name!r}")


class AttributeRegistry(Mapping[str, AttributeSpec]):
    """An immutable name → AttributeSpec mapping."""

    def __init__(self, specs: Iterable[AttributeSpec]) -> None:
        by_name: dict[str, AttributeSpec] = {}
        for spec in specs:
            if spec.name in by_name:
                raise ValueError(f"attribute {spec.name!r} declared twice")
            by_name[spec.name] = spec
        self._by_name = by_name

    def __getitem__(self, name: str) -> AttributeSpec:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def suggest(self, name: str) -> str | None:
        """The closest declared name, for 'did you mean' in errors."""
        close = difflib.get_close_matches(name.lower(), list(self._by_name), n=1, cutoff=0.75)
        return close[0] if close else None

    def extended(self, specs: Iterable[AttributeSpec]) -> AttributeRegistry:
        """A new registry with more attributes (a name may not be redeclared)."""
        return AttributeRegistry([*self._by_name.values(), *specs])


class FeatureLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def description(self) -> str: ...


# Feature schema types are coarse (a fingerprint is a "string"); lists need the precise kind so a
# list of emails cannot be tested against an IP address.
REFINED_KINDS: Final[Mapping[str, ValueKind]] = {
    "card_bin": ValueKind.CARD_BIN,
    "card_fingerprint": ValueKind.CARD_FINGERPRINT,
    "customer": ValueKind.CUSTOMER_ID,
    "email": ValueKind.EMAIL,
    "email_domain": ValueKind.EMAIL_DOMAIN,
    "ip_address": ValueKind.IP_ADDRESS,
}

CLOSED_VOCABULARIES: Final[Mapping[str, frozenset[str]]] = {
    "card_funding": frozenset({"credit", "debit", "prepaid", "unknown"}),
    "risk_level": frozenset({"normal", "elevated", "highest"}),
}

_SCHEMA_KINDS: Final[Mapping[str, ValueKind]] = {
    "number": ValueKind.NUMBER,
    "boolean": ValueKind.BOOLEAN,
    "string": ValueKind.STRING,
    "country": ValueKind.COUNTRY,
}

# Attributes the rules language offers that the feature schema does not (yet) compute. The lead
# adds them to `feature_schema` or to the features dict; until then they are simply missing.
EXTRA_ATTRIBUTES: Final[tuple[AttributeSpec, ...]] = (
    AttributeSpec("card_bin", ValueKind.CARD_BIN, "the card's BIN (first 6 or 8 digits)"),
    AttributeSpec("is_3ds_authenticated", ValueKind.BOOLEAN, "3-D Secure succeeded"),
)


def registry_from_features(
    features: Iterable[FeatureLike],
    *,
    refined: Mapping[str, ValueKind] = REFINED_KINDS,
    vocabularies: Mapping[str, frozenset[str]] = CLOSED_VOCABULARIES,
) -> AttributeRegistry:
    specs = []
    for feature in features:
        kind = refined.get(feature.name) or _SCHEMA_KINDS[feature.type]
        specs.append(
            AttributeSpec(feature.name, kind, feature.description, vocabularies.get(feature.name))
        )
    return AttributeRegistry(specs)


def _default_registry() -> AttributeRegistry:
    base = registry_from_features((*feature_schema.FEATURES, *feature_schema.OUTPUTS))
    # Once the feature schema computes an extra attribute itself, its declaration wins.
    return base.extended(spec for spec in EXTRA_ATTRIBUTES if spec.name not in base)


DEFAULT_REGISTRY: Final = _default_registry()
