"""Request parameters of the payments endpoints (Stripe's names and types)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from bastionpay.api.params import FormBool, FormInt, FormStr, ListParams, Metadata, Params

CaptureMethod = Literal["automatic", "automatic_async", "manual"]
CancellationReason = Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"]
RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]


class RadarOptions(Params):
    """Stripe's `radar_options` (`session`), extended with the signals a server-side integration
    knows and Stripe.js would otherwise collect: the buyer's IP address and its country, and the
    merchant's device id (issue 7, item 1; docs/stripe-compatibility.md)."""

    session: FormStr | None = Field(default=None, max_length=200)
    ip_address: FormStr | None = Field(default=None, max_length=45)
    ip_country: FormStr | None = Field(default=None, min_length=2, max_length=2)
    device_id: FormStr | None = Field(default=None, max_length=128)

    # Checked here, where a bad value is the caller's 400: these feed rules and lists, and a value
    # that fits no kind would otherwise fail the merchant's whole rule set (security review M2).
    @field_validator("ip_address")
    @classmethod
    def _ip_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address") from None

    @field_validator("ip_country")
    @classmethod
    def _ip_country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not (value.isascii() and value.isalpha()):
            raise ValueError("must be a two-letter ISO 3166-1 country code")
        return value.upper()


class CreatePaymentIntent(Params):
    amount: FormInt
    currency: FormStr
    customer: FormStr | None = None
    payment_method: FormStr | None = None
    payment_method_types: list[Literal["card"]] | None = None
    confirm: FormBool = False
    capture_method: CaptureMethod | None = None
    description: FormStr | None = Field(default=None, max_length=1000)
    receipt_email: FormStr | None = Field(default=None, max_length=512)
    statement_descriptor: FormStr | None = Field(default=None, max_length=22)
    metadata: Metadata | None = None
    radar_options: RadarOptions | None = None
    # Where the cardholder lands after 3-D Secure (issue 4, item 7), as on Stripe.
    return_url: FormStr | None = Field(default=None, max_length=1800)


class UpdatePaymentIntent(Params):
    amount: FormInt | None = None
    currency: FormStr | None = None
    customer: FormStr | None = None
    payment_method: FormStr | None = None
    payment_method_types: list[Literal["card"]] | None = None
    capture_method: CaptureMethod | None = None
    description: FormStr | None = Field(default=None, max_length=1000)
    receipt_email: FormStr | None = Field(default=None, max_length=512)
    statement_descriptor: FormStr | None = Field(default=None, max_length=22)
    metadata: Metadata | None = None


class ConfirmPaymentIntent(Params):
    payment_method: FormStr | None = None
    capture_method: CaptureMethod | None = None
    receipt_email: FormStr | None = Field(default=None, max_length=512)
    radar_options: RadarOptions | None = None
    return_url: FormStr | None = Field(default=None, max_length=1800)


class CapturePaymentIntent(Params):
    amount_to_capture: FormInt | None = None
    metadata: Metadata | None = None


class CancelPaymentIntent(Params):
    cancellation_reason: CancellationReason | None = None


class ListPaymentIntents(ListParams):
    customer: FormStr | None = None


class ListCharges(ListParams):
    customer: FormStr | None = None
    payment_intent: FormStr | None = None


class CreateRefund(Params):
    charge: FormStr | None = None
    payment_intent: FormStr | None = None
    amount: FormInt | None = None
    reason: RefundReason | None = None
    metadata: Metadata | None = None


class UpdateRefund(Params):
    metadata: Metadata | None = None


class ListRefunds(ListParams):
    charge: FormStr | None = None
    payment_intent: FormStr | None = None


class AttachPaymentMethod(Params):
    customer: FormStr


class ListPaymentMethods(ListParams):
    customer: FormStr | None = None
    type: Literal["card"] | None = None


class ListCustomerPaymentMethods(ListParams):
    type: Literal["card"] | None = None


class NoParams(Params):
    pass
