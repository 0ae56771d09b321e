"""HTTP routers: the user API (``/api/v1``) and the center protocol (``/center/v1``)."""
