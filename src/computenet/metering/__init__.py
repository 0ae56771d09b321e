"""Metering and pricing: usage → chip·h, CU·h, kWh, ¥ by time-of-use tariff (pure)."""

from computenet.metering.cost import TransferLot, Usage, fee_cny, price
from computenet.metering.pricing import (
    Charges,
    charge,
    cu_hours,
    energy_cost_cny,
    energy_kwh,
    fen,
)

__all__ = [
    "Charges",
    "TransferLot",
    "Usage",
    "charge",
    "cu_hours",
    "energy_cost_cny",
    "energy_kwh",
    "fee_cny",
    "fen",
    "price",
]
