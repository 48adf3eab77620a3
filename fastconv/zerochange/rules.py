"""The serve-or-fall-back rule: which of a user's module's names fastconv may replace.

The user's module runs first, as it would without fastconv. Then each function or class it
defines under a name that fastconv also defines is compared with fastconv's:

1. same kind (function or class);
2. a signature that accepts every call the user's accepts, with the same meaning (same
   parameter names, kinds, order and defaults; fastconv may only add optional parameters),
   and for a class, every public method of the user's present in fastconv's, likewise;
3. the same behaviour on the probe scenarios of :mod:`fastconv.zerochange.probes`: both run
   from the same ``np.random`` state, must give the same results, leave the user's public
   attributes with the same values, and draw the same random numbers.

Only a name that passes all three is served: the module's global is rebound to fastconv's
object, so the user's own functions and classes in that module, which look their globals up
at call time, use fastconv's too. Anything else keeps the user's definition, with the reason
recorded. Probing never changes the random state the script sees.
"""
import contextlib
import importlib
import inspect
import io
import random
import warnings

import numpy as np

from fastconv import mode as _mode
from fastconv.trainer import run_checkpoints_paused
from fastconv.zerochange.compare import signature_difference, value_difference
from fastconv.zerochange.probes import SCENARIOS, State


class ModuleReport:
    """What happened to one user module: names served, names kept and why."""

    def __init__(self, name, origin, targets):
        self.name = name
        self.origin = origin
        self.targets = targets
        self.served = {}   # name -> "fastconv.module.Name"
        self.kept = {}     # name -> reason the user's definition stays
        self.own = []      # names fastconv does not define: the user's, nothing to decide

    def lines(self):
        out = [f"{self.name} ({self.origin})"]
        for name, target in self.served.items():
            out.append(f"  served   {name:<24} by {target}")
        for name, reason in self.kept.items():
            out.append(f"  user's   {name:<24} {reason}")
        if self.own:
            out.append(f"  user's   {', '.join(self.own)}  (fastconv has no such name)")
        return out


def serve(module, targets):
    """Apply the rule to ``module`` (already executed) against fastconv modules ``targets``."""
    report = ModuleReport(module.__name__, getattr(module, "__file__", "?"), targets)
    ours_by_name = {}
    for target in targets:
        try:
            ours_module = importlib.import_module(target)
        except ImportError:
            continue  # an optional candidate (ch04's net) that this fastconv does not have
        for name, obj in vars(ours_module).items():
            if _is_definition(obj) and not name.startswith("__"):
                ours_by_name.setdefault(name, []).append((target, obj))
    decisions = {}
    for name, user_obj in list(vars(module).items()):
        if not _is_definition(user_obj) or getattr(user_obj, "__module__", None) != module.__name__:
            continue  # imported from elsewhere: decided (or not) where it is defined
        if name not in ours_by_name:
            if not name.startswith("_"):
                report.own.append(name)
            continue
        reasons = []
        for target, ours in ours_by_name[name]:
            why = difference(user_obj, ours, SCENARIOS.get(target, {}).get(name))
            if why is None:
                decisions[name] = ours
                report.served[name] = f"{target}.{name}"
                break
            reasons.append(why if len(ours_by_name[name]) == 1 else f"{target}: {why}")
        else:
            report.kept[name] = "; ".join(reasons)
    for name, ours in decisions.items():  # only after every probe ran on the user's objects
        setattr(module, name, ours)
    return report


def _is_definition(obj):
    return inspect.isfunction(obj) or inspect.isclass(obj)


def difference(user, ours, scenario):
    """Why ``ours`` may not replace ``user`` (a short phrase), or None if it may."""
    if inspect.isclass(user) != inspect.isclass(ours):
        return "a class against a function" if inspect.isclass(user) else "a function against a class"
    why = signature_difference(user, ours)
    if why:
        return f"signature: {why}"
    if inspect.isclass(user):
        why = _method_difference(user, ours)
        if why:
            return why
    if scenario is None:
        return "no probe for this name: cannot check it"
    return behaviour_difference(user, ours, scenario)


def _method_difference(user_cls, our_cls):
    for name, member in vars(user_cls).items():
        if name.startswith("_") or not callable(member):
            continue
        ours = getattr(our_cls, name, None)
        if ours is None:
            return f"fastconv's has no method {name}()"
        why = signature_difference(member, ours)
        if why:
            return f"{name}(): {why}"
    return None


def behaviour_difference(user, ours, scenario):
    start = _rng_state()
    try:
        # both sides in parity mode: equivalence is judged in float64, the book's dtype, and
        # what is served then runs in the mode in use (a probe's networks follow the mode too)
        # (the probes' Trainers are not the script's: they take none of its run checkpoints)
        with _mode.using_mode("parity"), run_checkpoints_paused():
            user_seen, user_error, user_end, user_printed = _run(user, scenario, start)
            our_seen, our_error, our_end, our_printed = _run(ours, scenario, start)
    finally:
        _set_rng_state(start)
    if user_error is not None:
        return f"the user's raises on the probe ({user_error})"
    if our_error is not None:
        return f"fastconv's raises on the probe ({our_error})"
    why = _observations_difference(user_seen, our_seen)
    if why:
        return f"behaviour: {why}"
    if user_printed != our_printed:
        # a print a learner added to watch a function: served, it would vanish
        return f"behaviour: prints {_first_line(user_printed)!r} where fastconv's prints " \
               f"{_first_line(our_printed)!r}"
    if not _same_rng_state(user_end, our_end):
        return "behaviour: draws a different amount of random numbers"
    return None


def _run(obj, scenario, start):
    """(observations, error, random state after, what it printed to stdout)."""
    _set_rng_state(start)
    sink, printed = io.StringIO(), io.StringIO()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"), \
                contextlib.redirect_stdout(printed), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            seen = scenario(obj)
        return seen, None, _rng_state(), printed.getvalue()
    except Exception as exc:  # any failure on a probe means "not equivalent", never a crash
        return None, f"{type(exc).__name__}: {exc}"[:160], None, None


def _first_line(text):
    return text.strip().splitlines()[0][:60] if text.strip() else ""


def _observations_difference(user_seen, our_seen):
    if len(user_seen) != len(our_seen):
        return "a different number of observations"
    for index, (a, b) in enumerate(zip(user_seen, our_seen)):
        where = f"probe step {index + 1}"
        if isinstance(a, State):
            why = _state_difference(a.instance, b.instance if isinstance(b, State) else b, where)
        else:
            why = value_difference(a, b, where)
        if why:
            return why
    return None


def _state_difference(user_instance, our_instance, where):
    missing = object()
    for name, value in vars(user_instance).items():
        if name.startswith("_"):
            continue
        try:
            ours = getattr(our_instance, name, missing)
        except Exception as exc:
            return f"{where}: reading .{name} raises {type(exc).__name__}"
        if ours is missing:
            return f"fastconv's has no attribute .{name}"
        why = value_difference(value, ours, f"{where}: .{name}", strict_types=False)
        if why:
            return why
    return None


def _rng_state():
    return np.random.get_state(), random.getstate()


def _set_rng_state(state):
    np.random.set_state(state[0])
    random.setstate(state[1])


def _same_rng_state(a, b):
    (_, keys_a, pos_a, gauss_a, cached_a), (_, keys_b, pos_b, gauss_b, cached_b) = a[0], b[0]
    return (np.array_equal(keys_a, keys_b) and pos_a == pos_b and gauss_a == gauss_b
            and cached_a == cached_b and a[1] == b[1])
