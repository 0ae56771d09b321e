"""Run a coroutine to its end from a test, whatever loop the test's thread holds.

The browser tests' session-wide Playwright (its sync API) keeps an event loop
running in the main thread until the session ends, so a later test's
``asyncio.run`` there fails with "cannot be called from a running event loop".
A fresh thread has no loop: the coroutine gets its own there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` in a thread of its own; its result, or its exception raised here."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
