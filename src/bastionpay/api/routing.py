"""Endpoint declarations. Every route names its permission (SECURITY-REQUIREMENTS I5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from bastionpay.api.params import Params
from bastionpay.merchants.service import Caller
from bastionpay.payments.context import PaymentContext


@dataclass(frozen=True)
class Result:
    body: dict[str, Any]
    status: int = 200


@dataclass(frozen=True)
class Call:
    session: Session
    caller: Caller
    ctx: PaymentContext
    params: Any
    path: dict[str, str]
    expand: list[str] = field(default_factory=list)


Handler = Callable[[Call], Result]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permission: str
    params: type[Params]
    handler: Handler

    @property
    def writes(self) -> bool:
        return self.method in ("POST", "DELETE")
