"""Cost of routing 1,000 queries, in USD.

Two ways to price a router: a self-hosted model pays for the hardware's time (one query at a
time, so a lower bound on throughput), an API model pays per token.
"""

from __future__ import annotations


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def cost_per_1k_from_hardware(seconds_per_query: float, price_per_hour_usd: float) -> float:
    """USD for 1,000 queries served one after another on hardware billed by the hour."""
    _check_non_negative(seconds_per_query=seconds_per_query, price_per_hour_usd=price_per_hour_usd)
    return 1000 * seconds_per_query / 3600 * price_per_hour_usd


def cost_per_1k_from_tokens(
    mean_tokens_in: float, mean_tokens_out: float, usd_per_m_in: float, usd_per_m_out: float
) -> float:
    """USD for 1,000 queries billed per million input and output tokens."""
    _check_non_negative(
        mean_tokens_in=mean_tokens_in,
        mean_tokens_out=mean_tokens_out,
        usd_per_m_in=usd_per_m_in,
        usd_per_m_out=usd_per_m_out,
    )
    return 1000 * (mean_tokens_in * usd_per_m_in + mean_tokens_out * usd_per_m_out) / 1_000_000
