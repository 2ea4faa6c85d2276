"""Unit tests: pure code, no root, no kernel."""
