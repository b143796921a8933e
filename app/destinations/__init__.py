"""Destination APIs, one module each, behind the protocol in ``base``."""
