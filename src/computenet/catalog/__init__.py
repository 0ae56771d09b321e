"""Built-in chip specs, throughput matrix and networks, and the network-file loader."""

from computenet.catalog.loader import (
    BUILTIN_NETWORKS,
    load_chips,
    load_network,
    load_throughput,
    network_from_dict,
)

__all__ = ["BUILTIN_NETWORKS", "load_chips", "load_network", "load_throughput", "network_from_dict"]
