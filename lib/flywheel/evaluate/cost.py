"""Cost of routing 1,000 queries, in USD.

Two ways to price a router: a self-hosted model pays for the hardware's time (one query at a
time, so a lower bound on throughput), an API model pays per token.
"""

from __future__ import annotations

from flywheel.core.cost import check_non_negative


def cost_per_1k_from_hardware(seconds_per_query: float, price_per_hour_usd: float) -> float:
    """USD for 1,000 queries served one after another on hardware billed by the hour."""
    check_non_negative(seconds_per_query=seconds_per_query, price_per_hour_usd=price_per_hour_usd)
    return 1000 * seconds_per_query / 3600 * price_per_hour_usd
