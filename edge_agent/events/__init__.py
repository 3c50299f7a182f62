"""Events: one in-process hub of typed events; SSE is its first subscriber, broker publishers plug in as sinks."""

from aiohttp import web

from . import sse
from .hub import EVENTS, Event, EventHub, Subscriber
from .types import DetectionsEvent, FpsEvent, HazardEvent, HubEvent, SourceEvent, dumps

__all__ = [
    "EVENTS",
    "DetectionsEvent",
    "Event",
    "EventHub",
    "FpsEvent",
    "HazardEvent",
    "HubEvent",
    "SourceEvent",
    "Subscriber",
    "dumps",
    "setup_events",
]


def setup_events(app: web.Application, buffer_size: int, queue_size: int, max_clients: int) -> EventHub:
    """Create the app's hub and serve it over SSE on /stream/events[/{client_id}]."""
    hub = app[EVENTS] = EventHub(buffer_size, queue_size, max_clients=max_clients)
    app.router.add_get("/stream/events", sse.events_handler)
    app.router.add_get("/stream/events/{client_id}", sse.events_handler)
    return hub
