"""The link graph: paths between nodes, transfer time and cost estimates."""

from computenet.network.paths import PathTable, transfer_seconds

__all__ = ["PathTable", "transfer_seconds"]
