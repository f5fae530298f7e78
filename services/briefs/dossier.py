"""The client dossier's sixteen headings, and how complete and current a dossier is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Heading(StrEnum):
    """What the agency must know about a client, after the handbook's sixteen suggestions."""

    RESEARCH = "research"  # research available on product and market
    COMPANY = "company"  # history, growth
    ORGANISATION = "organisation"  # organisation and culture
    PRODUCT = "product"  # ingredients, sizes, packaging, price
    PURCHASE_BASIS = "purchase_basis"  # rational and emotional reasons to buy
    PRODUCT_PROBLEMS = "product_problems"  # as consumers voice them
    BRAND_HISTORY = "brand_history"  # launches, strategy, share, response to price and promotion
    MARKET = "market"  # size, trend, seasonality, regions
    COMPETITION = "competition"  # share, threats, why winners win
    COMPETITOR_ADVERTISING = "competitor_advertising"  # their advertising and spend
    CONSUMERS = "consumers"  # users, influencers, buyers, heavy users; demographics, psychographics
    CHANNELS = "channels"  # distribution channels
    POSITION = "position"  # product position
    MARKETING_OBJECTIVES = "marketing_objectives"
    MARKETING_STRATEGY_AND_BUDGET = "marketing_strategy_and_budget"
    EVALUATION_METHOD = "evaluation_method"  # pre-test, tracking, test market, share


TITLES: Mapping[Heading, str] = {
    Heading.RESEARCH: "Research on product and market",
    Heading.COMPANY: "Company history and growth",
    Heading.ORGANISATION: "Organisation and culture",
    Heading.PRODUCT: "Product details",
    Heading.PURCHASE_BASIS: "Rational and emotional purchase basis",
    Heading.PRODUCT_PROBLEMS: "Product problems as consumers voice them",
    Heading.BRAND_HISTORY: "Brand history",
    Heading.MARKET: "Total market",
    Heading.COMPETITION: "Competition",
    Heading.COMPETITOR_ADVERTISING: "Competitors' advertising and spend",
    Heading.CONSUMERS: "Consumers",
    Heading.CHANNELS: "Distribution channels",
    Heading.POSITION: "Product position",
    Heading.MARKETING_OBJECTIVES: "Marketing objectives",
    Heading.MARKETING_STRATEGY_AND_BUDGET: "Marketing strategy and budget",
    Heading.EVALUATION_METHOD: "How the client evaluates advertising",
}


@dataclass(frozen=True)
class Health:
    completeness: float  # share of headings with content, 0..1
    missing: list[Heading]
    stale: list[Heading]  # filled, but not updated within the window


def health(updated: Mapping[Heading, datetime], *, now: datetime, stale_after: timedelta) -> Health:
    """`updated` holds the last update of every heading that has content."""
    missing = [h for h in Heading if h not in updated]
    stale = [h for h in Heading if h in updated and now - updated[h] > stale_after]
    return Health(round((len(Heading) - len(missing)) / len(Heading), 4), missing, stale)
