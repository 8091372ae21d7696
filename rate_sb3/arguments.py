"""Checks of the algorithm's constructor arguments, shared by the classes that declare them."""

from __future__ import annotations


def require_at_least(minimum: int, **values: int) -> None:
    """Raise a ValueError that names the first of ``values`` below ``minimum``.

    :param minimum: the lowest value allowed
    :param values: the arguments to check, by name
    """
    for name, value in values.items():
        if int(value) < minimum:
            raise ValueError(f"RATE: {name}={value} must be >= {minimum}")
