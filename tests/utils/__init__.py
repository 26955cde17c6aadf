"""Helpers shared by test modules (imported explicitly, not through conftest.py)."""
