"""Placement of titles on edges: rendezvous (highest-random-weight) hashing with bounded loads.

A title's edges are the first ones in its own hash order that still have room under
(1 + epsilon) x the average load: a cold title stays on one edge (cache locality: one origin fetch per
object), a hot title spills over as many edges as its demand needs. Pure; deterministic.
"""

from __future__ import annotations

import hashlib
import math

DEFAULT_EPSILON = 0.25


def weight(title: str, edge: str) -> int:
    digest = hashlib.blake2b(f"{title}\x00{edge}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hash_order(title: str, edges: list[str]) -> list[str]:
    """Edges in this title's preference order (stable when other edges come and go)."""
    return sorted(edges, key=lambda edge: (-weight(title, edge), edge))


def edges_needed(demand: float, capacity: float, available: int) -> int:
    if available <= 0:
        return 0
    if capacity <= 0:
        return available
    return max(1, min(available, math.ceil(demand / capacity)))


def place(
    demand: dict[str, float], edges: list[str], capacity: float, epsilon: float = DEFAULT_EPSILON
) -> dict[str, list[str]]:
    """title → its edges, in preference order. ``demand`` is requests/s per title; titles without
    demand are not listed (``place_one`` answers for them)."""
    if not edges:
        return {title: [] for title in demand}
    total = sum(demand.values())
    load = dict.fromkeys(edges, 0.0)
    placement: dict[str, list[str]] = {}
    # Hottest first: they need several edges; cold titles then fill in around them.
    for title in sorted(demand, key=lambda t: (-demand[t], t)):
        rate = demand[title]
        count = edges_needed(rate, capacity, len(edges))
        share = rate / count
        cap = max((1 + epsilon) * total / len(edges), share)
        order = hash_order(title, edges)
        chosen = [edge for edge in order if load[edge] + share <= cap + 1e-9][:count]
        if len(chosen) < count:
            rest = sorted((e for e in order if e not in chosen), key=lambda e: (load[e], order.index(e)))
            chosen += rest[: count - len(chosen)]
        chosen.sort(key=order.index)
        for edge in chosen:
            load[edge] += share
        placement[title] = chosen
    return placement


def place_one(title: str, placement: dict[str, list[str]], edges: list[str]) -> list[str]:
    """A title's edges: from the placement when it has demand, else its first edge in hash order."""
    placed = [edge for edge in placement.get(title, []) if edge in edges]
    return placed or hash_order(title, edges)[:1]
