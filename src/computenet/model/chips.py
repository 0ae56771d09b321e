"""Accelerator and CPU chips: what a center's pools are made of."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Stack(StrEnum):
    """The software stack a chip runs; a job built for one cannot run on another."""

    CUDA = "cuda"
    CANN = "cann"
    NEUWARE = "neuware"
    ROCM = "rocm"
    CPU = "cpu"


class Chip(BaseModel):
    """One chip type with its published (or assumed) peak figures.

    `bf16_tflops` is dense BF16/FP16 peak; `fp32_tflops` is FP32 peak. For CPU
    nodes the "chip" is a whole two-socket node and bf16_tflops holds its FP32
    figure, since that is the work such a node delivers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    vendor: str
    stack: Stack
    bf16_tflops: float = Field(gt=0)
    fp32_tflops: float = Field(gt=0)
    memory_gb: float = Field(gt=0)
    tdp_w: float = Field(gt=0)
    source: str = ""
