"""Test-only helpers shared by the suites (processes on 127.0.0.1, free ports)."""
