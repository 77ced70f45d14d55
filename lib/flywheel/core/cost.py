"""USD for 1,000 queries of a model billed per token: the eval stage prices routers with it, the flywheel
bills each week's production calls with it."""

from __future__ import annotations


def check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def cost_per_1k_from_tokens(
    mean_tokens_in: float, mean_tokens_out: float, usd_per_m_in: float, usd_per_m_out: float
) -> float:
    """USD for 1,000 queries billed per million input and output tokens."""
    check_non_negative(
        mean_tokens_in=mean_tokens_in,
        mean_tokens_out=mean_tokens_out,
        usd_per_m_in=usd_per_m_in,
        usd_per_m_out=usd_per_m_out,
    )
    return 1000 * (mean_tokens_in * usd_per_m_in + mean_tokens_out * usd_per_m_out) / 1_000_000
