"""BastionPay: a self-hosted, security-first online payment platform."""

__version__ = "0.1.0"
