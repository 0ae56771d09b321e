"""The service gateway (`cnet gateway`): one endpoint per service, steered per request.

`scoring` holds the decision (CATS-style: raw metrics, normalized per category,
one score); `proxy` the ASGI reverse proxy that applies it. docs/services.md.
"""
