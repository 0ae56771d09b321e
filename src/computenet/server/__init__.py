"""The control plane: API routers, auth, scheduling loop, dispatcher, reconciler, metering.

`create_app(settings)` builds the FastAPI app; `serve(settings)` runs it (`cnet server`);
`computenet.server.admin` holds the functions `cnet admin` calls on a database URL.
"""

from computenet.server.app import create_app, serve
from computenet.server.settings import DEFAULT_DB_URL, NetworkClock, Settings

__all__ = ["DEFAULT_DB_URL", "NetworkClock", "Settings", "create_app", "serve"]
