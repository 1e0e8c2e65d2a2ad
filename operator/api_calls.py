"""The operator's API requests as the reconciler makes them: at most API_CONCURRENCY at once,
each failure counted by call and labelled with it (so status and events can name it), and
events posted without ever failing the reconcile that raised them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp

from multitalk.operator import metrics
from multitalk.operator.conditions import ApiFailure, Event
from multitalk.operator.kube import ApiError, Kube
from multitalk.operator.reasons import ApiCall

log = logging.getLogger("multitalk.operator")
T = TypeVar("T")

# Concurrent API requests (and client threads, and pooled connections).
API_CONCURRENCY = 8
EVENT_CONCURRENCY = 8


class ApiCalls:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._slots = asyncio.Semaphore(API_CONCURRENCY)
        self._event_slots = asyncio.Semaphore(EVENT_CONCURRENCY)

    async def call(self, call: ApiCall, coro: Awaitable[T], expected: tuple[int, ...] = ()) -> T:
        """Make one request; an ApiError names the call, and counts unless its status is `expected`."""
        async with self._slots:
            try:
                return await coro
            except ApiError as exc:
                if exc.status not in expected:
                    metrics.API_ERRORS.labels(operation=call).inc()
                exc.call = exc.call or call
                raise

    async def attempt(self, call: ApiCall, coro: Awaitable[None]) -> list[ApiFailure]:
        """Make an action's request; its failure, if the API server refused it."""
        try:
            await self.call(call, coro)
        except ApiError as exc:
            log.warning("%s failed: %s", call, exc)
            return [ApiFailure(call, exc.status, exc.reason)]
        return []

    async def post_events(self, tv: dict[str, Any], events: list[Event]) -> None:
        meta = tv["metadata"]
        async with self._event_slots:
            for event in events:
                try:
                    await self.call(
                        ApiCall.POST_EVENT, self.kube.post_event(tv, event.type, event.reason, event.message)
                    )
                # An event is not worth failing anything (nor, timed out, an unread task error).
                except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                    log.warning(
                        "could not post event %s on %s/%s: %s",
                        event.reason,
                        meta["namespace"],
                        meta["name"],
                        exc.status if isinstance(exc, ApiError) else repr(exc),
                    )
