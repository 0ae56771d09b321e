"""ComputeNet: an open computing power network (算力网).

Many compute centers — different chips, local schedulers, tariffs and links —
joined into one network that decides where and when work runs.
"""

from computenet.errors import ComputeNetError

__version__ = "0.1.0"

__all__ = ["Client", "ComputeNetError", "__version__"]


def __getattr__(name: str) -> object:
    # The SDK pulls in httpx; import it lazily so `computenet.model` stays light.
    if name == "Client":
        from computenet.sdk.client import Client

        return Client
    raise AttributeError(name)
