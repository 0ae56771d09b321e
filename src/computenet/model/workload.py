"""Workload classes and the throughput matrix: how fast a class of work runs on each chip."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from computenet.model.chips import Chip


class ThroughputMatrix(BaseModel):
    """Share of a chip's peak that a workload class actually delivers.

    `efficiency[cls][chip]` is a fraction in (0, 1]; a chip missing from a
    class's row cannot run that class (wrong stack, no kernels). Delivered
    PFLOPS of one chip = peak TFLOPS × efficiency / 1000, which is also the
    rate at which it earns compute units (1 CU·h = 1 PFLOPS for one hour).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    efficiency: dict[str, dict[str, float]]
    min_memory_gb: dict[str, float] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """The workload classes this matrix knows."""
        return sorted(self.efficiency)

    def can_run(self, cls: str, chip: str) -> bool:
        """Whether `chip` has an entry (and so kernels) for class `cls`."""
        return chip in self.efficiency.get(cls, {})

    def delivered_pflops(self, cls: str, chip: Chip) -> float:
        """PFLOPS one `chip` delivers on class `cls`, 0.0 where it cannot run it."""
        eff = self.efficiency.get(cls, {}).get(chip.name)
        if eff is None:
            return 0.0
        return chip.bf16_tflops * eff / 1000.0
