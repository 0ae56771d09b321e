"""`kernel.warm_up`: the kernels are ready after it, and a cycle then places as usual."""

from __future__ import annotations

from computenet.scheduler import kernel


def test_warm_up_makes_every_kernel_ready() -> None:
    took = kernel.warm_up()
    assert took >= 0.0
    assert kernel._evaluate_jit is not None
    assert kernel._prune_jit is not None and kernel._explain_index_jit is not None
    # Compiled, not the Python functions they are made from.
    assert kernel._evaluate_jit is not kernel._evaluate_py
    assert hasattr(kernel._evaluate_jit, "signatures") and kernel._evaluate_jit.signatures


def test_warm_up_makes_the_specializations_a_cycle_uses() -> None:
    """Inputs (`input_paths`) and the pruning of large networks are loaded too."""
    kernel.warm_up()
    for jit in (kernel._input_paths_jit, kernel._prune_jit, kernel._explain_index_jit):
        assert jit.signatures, jit


def test_warm_up_in_background_ends_with_the_kernels_ready() -> None:
    thread = kernel.warm_up_in_background()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert kernel._evaluate_jit is not None and kernel._evaluate_jit.signatures
