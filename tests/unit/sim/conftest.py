"""Small networks and workloads for the simulator tests (nothing read from ../shared)."""

from __future__ import annotations

import pytest

from computenet.catalog import network_from_dict
from computenet.model import Network


def tiny_network(east_chips: int = 16, west_chips: int = 16, bandwidth: float = 10.0) -> Network:
    """Two centers (east dear, west cheap), one user site, full-mesh links."""
    return network_from_dict(
        {
            "name": "tiny",
            "auto_links": {"bandwidth_gbps": bandwidth, "price_per_gb": 0.05},
            "centers": [
                {
                    "id": "east",
                    "region": "east",
                    "lat": 31.0,
                    "lon": 121.0,
                    "pools": [
                        {"chip": "A100", "count": east_chips},
                        {"chip": "CPU-node", "count": 8},
                    ],
                    "pue": 1.3,
                    "tariff": {"flat": 0.8},
                    "carbon_kg_per_kwh": 0.6,
                    "service_price_per_cuh": 2.5,
                    "tags": ["region:east"],
                },
                {
                    "id": "west",
                    "region": "west",
                    "lat": 37.5,
                    "lon": 105.2,
                    "pools": [
                        {"chip": "H800", "count": west_chips},
                        {"chip": "CPU-node", "count": 8},
                    ],
                    "pue": 1.15,
                    "tariff": {"flat": 0.36},
                    "carbon_kg_per_kwh": 0.7,
                    "service_price_per_cuh": 1.8,
                    "tags": ["region:west"],
                },
            ],
            "sites": [{"id": "city", "lat": 31.2, "lon": 121.5, "region": "east"}],
        }
    )


@pytest.fixture
def net() -> Network:
    """The two-center network."""
    return tiny_network()
