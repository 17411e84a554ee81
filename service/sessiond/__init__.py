"""sessiond: a Redis-backed distributed SIP session service driven by state tables."""

__version__ = "0.1.0"
