"""Shared test helpers, one noun a module; test modules import from here, never from
each other (fake engines live in tests/engines.py)."""
