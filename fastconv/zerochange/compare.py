"""Equivalence of two objects' observable results: what the serve-or-fall-back rule compares.

Numbers agree when they match to rounding at the scale of the larger value (float64 sums in
another order differ by a few ulps; a changed formula differs at the first digit).
"""
import inspect
import numbers

import numpy as np

RTOL = 1e-7  # well above float64 reordering noise (~1e-15), far below any real change


def signature_difference(user, ours):
    """Why ``ours`` cannot stand in for ``user`` at every call site of ``user``, or None.

    Every parameter of the user's signature must exist in ours at the same place, of the
    same kind, with an equal default; ours may add parameters only after them, with defaults.
    """
    try:
        theirs, mine = inspect.signature(user), inspect.signature(ours)
    except (TypeError, ValueError):
        return "signature unknown"
    user_params = list(theirs.parameters.values())
    our_params = list(mine.parameters.values())
    for index, param in enumerate(user_params):
        if index >= len(our_params):
            return f"extra parameter {param.name!r}"
        other = our_params[index]
        if (param.name, param.kind) != (other.name, other.kind):
            return (f"parameter {index + 1} is {param.name!r}, fastconv's is {other.name!r}"
                    if param.name != other.name else f"parameter {param.name!r} is of another kind")
        if not _same_default(param.default, other.default):
            return f"default of {param.name!r} is {param.default!r}, fastconv's {other.default!r}"
    for other in our_params[len(user_params):]:
        if other.default is inspect.Parameter.empty and other.kind not in (
                inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            return f"fastconv's requires parameter {other.name!r}"
    return None


def _same_default(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # defaults that cannot be compared are not the same
        return a is b


def value_difference(user, ours, where="result", strict_types=True):
    """Why the values differ (a short sentence naming ``where``), or None when they agree.

    strict_types: a result's scalar type must match too (``np.float64(0.5)`` and ``0.5``
    display differently in a notebook); attributes compare by value only.
    """
    if isinstance(user, (np.ndarray, np.generic, numbers.Number)) and not isinstance(user, bool):
        if strict_types and not isinstance(user, np.ndarray) and type(user) is not type(ours):
            return f"{where}: a {type(user).__name__} against a {type(ours).__name__}"
        return _number_difference(user, ours, where)
    if isinstance(user, dict):
        if not isinstance(ours, dict) or list(user) != list(ours):
            return f"{where}: keys {list(user)} against {_keys(ours)}"
        for key in user:
            why = value_difference(user[key], ours[key], f"{where}[{key!r}]", strict_types)
            if why:
                return why
        return None
    if isinstance(user, (list, tuple)):
        if not isinstance(ours, (list, tuple)) or len(user) != len(ours):
            return f"{where}: a sequence of {len(user)} against {_describe(ours)}"
        for index, (a, b) in enumerate(zip(user, ours)):
            why = value_difference(a, b, f"{where}[{index}]", strict_types)
            if why:
                return why
        return None
    if user is None or isinstance(user, (bool, str)):
        return None if (type(user) is type(ours) and user == ours) else (
            f"{where}: {user!r} against {_describe(ours)}")
    # any other object (a layer inside a network, say): the same kind of thing is enough
    if type(user).__name__ != type(ours).__name__:
        return f"{where}: a {type(user).__name__} against a {type(ours).__name__}"
    return None


def _number_difference(user, ours, where):
    if not isinstance(ours, (np.ndarray, np.generic, numbers.Number)) or isinstance(ours, bool):
        return f"{where}: a number or array against {_describe(ours)}"
    a, b = np.asarray(user), np.asarray(ours)
    if a.shape != b.shape:
        return f"{where}: shape {a.shape} against {b.shape}"
    # ints and floats of equal value agree (the book's epoch count is a float, say);
    # booleans and complex numbers must stay what they are
    if a.dtype.kind != b.dtype.kind and not (a.dtype.kind in "iuf" and b.dtype.kind in "iuf"):
        return f"{where}: dtype {a.dtype} against {b.dtype}"
    if a.dtype.kind in "biu" and b.dtype.kind in "biu":
        return None if np.array_equal(a, b) else f"{where}: different values"
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    if not np.allclose(a, b, rtol=RTOL, atol=RTOL * scale, equal_nan=True):
        largest = float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))
        return f"{where}: differs by up to {largest:.3g} (scale {scale:.3g})"
    return None


def _keys(obj):
    return list(obj) if isinstance(obj, dict) else _describe(obj)


def _describe(obj):
    return f"a {type(obj).__name__}"
