"""Both sides of a diff made comparable: ``normalize`` (from ``gitops.model.server_fields``,
where the log's change projection uses it too) drops what the server fills in and folds a
Secret's ``stringData`` into ``data``; quantities and port numbers compare by value.

Pure: dicts in, dicts out; the inputs are never changed.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from gitops.model.server_fields import normalize

__all__ = ["normalize", "same_scalar"]

_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?\Z")
_SUFFIX = {None: Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
           "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
           "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20,
           "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}


def _quantity(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    m = _QUANTITY.match(value)
    if m is None:
        return None
    try:
        return Decimal(m.group(1)) * _SUFFIX[m.group(2)]
    except InvalidOperation:
        return None


def same_scalar(desired: object, actual: object, *, quantity: bool) -> bool:
    """Whether two leaf values mean the same: equal; an int and its string form (ports,
    targetPort); or, where ``quantity`` says the field holds one, the same quantity
    (``1000m`` is ``1``, ``1Gi`` is ``1024Mi``)."""
    if desired == actual and type(desired) is type(actual):
        return True
    if isinstance(desired, bool) or isinstance(actual, bool):
        return False
    if (isinstance(desired, int) and isinstance(actual, str)) or (isinstance(desired, str) and isinstance(actual, int)):
        return str(desired) == str(actual)
    if quantity:
        a, b = _quantity(desired), _quantity(actual)
        return a is not None and a == b
    return isinstance(desired, (int, float)) and isinstance(actual, (int, float)) and desired == actual
