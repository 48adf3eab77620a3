"""What a checkpoint records about the run that wrote it, and how two records differ.

A checkpoint is refused where it was made for another run (``fastconv.checkpoint``): another
network (its class, parameters' shapes and dtypes, running statistics, and the structure
that no shape shows: each layer's class and settings, the loss layer, the weight decay),
another optimizer (class and hyperparameters), or another training set-up (sizes, batch,
mode, seed, and a fingerprint of the data). Here are those descriptions, as JSON-ready
values for the checkpoint's header, and the differences between two of them, each named as a
person reads it.
"""
import hashlib
import numbers

import numpy as np

HYPERPARAMETERS = ("lr", "momentum", "decay_rate", "beta1", "beta2")


def array_spec(array):
    return [list(array.shape), array.dtype.str]


def state_slots(network):
    return network._state_slots() if hasattr(network, "_state_slots") else {}


# the settings of the book's layers that change what a step computes, though no parameter's
# shape shows them (a dropout ratio, a stride and padding that give the same output size)
LAYER_SETTINGS = {"Dropout": ("dropout_ratio",), "Convolution": ("stride", "pad"),
                  "Pooling": ("pool_h", "pool_w", "stride", "pad"),
                  "BatchNormalization": ("momentum",)}


def structure(network):
    """Each layer's name, class and settings in order, and the weight decay: what else than
    its shapes makes a network train differently (activation, dropout, weight decay)."""
    layers = getattr(network, "layers", None)
    if not isinstance(layers, dict):
        return None
    described = []
    for name, layer in layers.items():
        kind = type(layer).__name__
        settings = {}
        for setting in LAYER_SETTINGS.get(kind, ()):
            value = getattr(layer, setting, None)
            if isinstance(value, (bool, np.bool_, numbers.Real)):
                settings[setting] = value.item() if isinstance(value, np.generic) else value
        described.append([str(name), kind, settings])
    decay = getattr(network, "weight_decay_lambda", None)
    return {"layers": described, "last_layer": type(getattr(network, "last_layer", None)).__name__,
            "weight_decay_lambda": float(decay) if isinstance(decay, numbers.Real) else None}


def network_spec(network):
    """Class, params' [shape, dtype], the running statistics' declared shapes, and the
    structure (``structure``)."""
    params = {key: array_spec(np.asarray(value)) for key, value in network.params.items()}
    states = {key: list(shape) for key, (_, _, shape) in state_slots(network).items()}
    return {"class": type(network).__name__, "params": params, "state": states,
            "structure": structure(network)}


def optimizer_state_names(optimizer):
    """The names of the optimizer's per-parameter state dicts, e.g. ``("m", "v")``."""
    return tuple(getattr(type(optimizer), "_state", ()))


def optimizer_spec(optimizer):
    hyper = {name: float(getattr(optimizer, name)) for name in HYPERPARAMETERS
             if hasattr(optimizer, name)}
    return {"class": type(optimizer).__name__, "hyperparameters": hyper}


def training_spec(trainer):
    return {"mode": trainer.mode, "train_size": int(trainer.train_size),
            "test_size": int(len(trainer.x_test)), "batch_size": trainer.batch_size,
            "iter_per_epoch": trainer.iter_per_epoch,
            "evaluate_sample_num_per_epoch": trainer.evaluate_sample_num_per_epoch,
            "seed": trainer.seed, "data": data_fingerprint(trainer)}


FINGERPRINT_ROWS = 64


DATA = ("x_train", "t_train", "x_test", "t_test")


def data_fingerprint(trainer):
    """``{name: [dtype, shape, digest]}`` of the training and test sets: the digest of every
    label, and of FINGERPRINT_ROWS images spread evenly over each set (all of a smaller
    one). Data of the same sizes but other contents (another slice of MNIST, other
    preprocessing) then tells itself apart in microseconds, where hashing MNIST whole
    would take a second. Values are compared, not their layout: the byte order, and for
    integer labels (which only index) the integer type, do not count."""
    described = {}
    for name in DATA:
        array = np.asarray(getattr(trainer, name))
        if name.startswith("x") and len(array):
            rows = np.linspace(0, len(array) - 1, FINGERPRINT_ROWS).astype(np.intp)
            array = array[np.unique(rows)]
        kind = array.dtype.name
        if array.dtype.kind in "iu":
            array, kind = array.astype(np.int64), "integer"
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
        digest = hashlib.blake2b(array.tobytes(), digest_size=8).hexdigest()
        described[name] = [kind, list(np.shape(getattr(trainer, name))), digest]
    return described


def data_differences(found, expected):
    """Messages naming each array of the data that differs from the checkpoint's."""
    if not isinstance(found, dict):  # written before the data's fingerprint was recorded
        return []
    messages = []
    for name in DATA:
        was, now = found.get(name), expected[name]
        if not (isinstance(was, list) and len(was) == 3):
            messages.append(f"{name} is not described in the checkpoint")
        elif was[:2] != now[:2]:
            messages.append(f"{name} is {was[0]} {tuple(was[1])} in the checkpoint, "
                            f"{now[0]} {tuple(now[1])} here")
        elif was[2] != now[2]:
            what = "its labels" if name.startswith("t") else \
                f"{FINGERPRINT_ROWS} of its images spread over it"
            messages.append(f"{name} holds other values ({what} compared)")
    return messages


def shown(value):
    """A header value as a person reads it: ``float64 (10, 12)`` for an array spec."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], list) \
            and isinstance(value[1], str):
        try:
            return f"{np.dtype(value[1]).name} {tuple(value[0])}"
        except TypeError:
            pass
    return repr(value)


def differences(what, found, expected):
    """Messages naming each entry of two spec dicts that differs."""
    messages = []
    for key in expected:
        if key not in found:
            messages.append(f"{what} {key!r} is missing in the checkpoint")
        elif found[key] != expected[key]:
            messages.append(f"{what} {key!r} is {shown(found[key])} in the checkpoint, "
                            f"{shown(expected[key])} here")
    for key in found:
        if key not in expected:
            messages.append(f"{what} {key!r} is in the checkpoint but not here")
    return messages


def structure_differences(found, expected):
    if not isinstance(found, dict) or not isinstance(expected, dict):
        return [] if found == expected else ["the layers differ"]
    messages = []
    found_layers = found.get("layers")
    if found_layers != expected["layers"]:
        if not isinstance(found_layers, list) or len(found_layers) != len(expected["layers"]) \
                or any(not isinstance(f, list) or f[:2] != e[:2]
                       for f, e in zip(found_layers, expected["layers"])):
            messages.append("the layers are " + layer_names(found_layers) + " in the "
                            "checkpoint, " + layer_names(expected["layers"]) + " here")
        else:
            for (name, _, settings), (_, _, here) in zip(found_layers, expected["layers"]):
                messages += differences(f"layer {name!r}: setting", settings
                                        if isinstance(settings, dict) else {}, here)
    for key in ("last_layer", "weight_decay_lambda"):
        if found.get(key) != expected[key]:
            messages.append(f"{key} is {shown(found.get(key))} in the checkpoint, "
                            f"{shown(expected[key])} here")
    return messages


def layer_names(layers):
    if not isinstance(layers, list):
        return "unreadable"
    return "[" + ", ".join(f"{f[0]} ({f[1]})" if isinstance(f, list) and len(f) >= 2 else "?"
                           for f in layers) + "]"


def listed(messages, limit=6):
    shown = "; ".join(messages[:limit])
    return shown + (f"; and {len(messages) - limit} more" if len(messages) > limit else "")
