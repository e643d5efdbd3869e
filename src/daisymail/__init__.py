"""Daisy: a virtual-domain mail server that keeps sendmail + teapop semantics."""

__version__ = "0.1.0"
