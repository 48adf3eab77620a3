"""The Trainer's checkpoint file: everything needed to continue a run to the same bits.

A checkpoint holds the parameters, the BatchNorm running statistics, the optimizer's state
(``v``, ``h``, ``m``, ``iter`` ...), ``np.random``'s global state and the Trainer's own
generator, the counters and the lists. :func:`save` writes it atomically
(:func:`fastconv.fileio.atomic_write`), so a kill at any moment leaves the previous
checkpoint or the new one, never a mix.

The file is an uncompressed ``.npz`` (a zip of ``.npy`` members, which ``np.load`` can open)
plus one ``header.json`` member describing the run. :func:`load` never unpickles anything and
trusts nothing in the file: the size of the file, the zip layout, the header's fields and every
array's dtype and shape are checked against what the Trainer expects before a single value is
written back, and a checkpoint made for another network, optimizer or training set-up is
refused with an error naming what differs (what is compared: ``fastconv.run_description``).
See docs/checkpoints.md.
"""
import json
import math
import os
import struct
import zipfile

import numpy as np

from fastconv.fileio import NotARegularFileError, atomic_write, open_regular
from fastconv.run_description import (array_spec, data_differences, differences, listed,
                                      network_spec, optimizer_spec, optimizer_state_names,
                                      state_slots, structure_differences, training_spec)

__all__ = ["CheckpointError", "save", "load", "read_header"]

FORMAT = "fastconv-checkpoint"
VERSION = 1
HEADER_NAME = "header.json"
HEADER_LIMIT = 1 << 20  # bytes; a real header is a few KB
MEMBER_OVERHEAD = 1 << 14  # bytes allowed per member for its zip entry and .npy header

# the hyperparameters each optimizer has; a resumed run must use the same values
LISTS = ("train_loss", "train_acc", "test_acc", "epoch_time")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
MT19937_WORDS = 624


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here: unreadable, malformed, or made for another run."""


# what zipfile and the .npy reader raise on damaged bytes (found by changing bytes at random)
_DAMAGE = (zipfile.BadZipFile, NotImplementedError, EOFError, OverflowError, struct.error,
           ValueError)


# --- saving --------------------------------------------------------------------------------

def legacy_random_state():
    """np.random's MT19937 state as (its key words, uint32, and the JSON fields that
    ``checked_legacy_fields`` reads back)."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return np.asarray(keys, dtype=np.uint32), {
        "bit_generator": kind, "pos": int(pos), "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian)}


def _capture(trainer):
    """(header, arrays) describing ``trainer`` at a step boundary."""
    network, optimizer = trainer.network, trainer.optimizer
    arrays = {}
    for key, value in network.params.items():
        arrays["params/" + key] = np.asarray(value)
    for key, (layer, attr, _) in state_slots(network).items():
        value = getattr(layer, attr)
        if value is not None:
            arrays["state/" + key] = np.asarray(value)

    present = {}
    for name in optimizer_state_names(optimizer):
        store = getattr(optimizer, name)
        present[name] = store is not None
        if store is not None:
            for key in network.params:
                arrays[f"optimizer/{name}/{key}"] = np.asarray(store[key])
    optimizer_header = optimizer_spec(optimizer)
    optimizer_header["state"] = present
    optimizer_header["iter"] = int(optimizer.iter) if hasattr(optimizer, "iter") else None

    arrays["rng/legacy_keys"], legacy = legacy_random_state()
    rng = {"legacy": legacy,
           "generator": None if trainer.rng is None else trainer.rng.bit_generator.state}

    lists = {"train_loss": trainer.train_loss_list, "train_acc": trainer.train_acc_list,
             "test_acc": trainer.test_acc_list, "epoch_time": trainer.epoch_time_list}
    for name, values in lists.items():
        arrays["lists/" + name] = np.asarray(values, dtype=np.float64).reshape(-1)
    arrays["lists/epoch_steady"] = np.asarray(trainer._epoch_steady, dtype=np.float64
                                              ).reshape(-1, 2)

    network_header = network_spec(network)
    network_header["state"] = {  # [shape, dtype] of each running statistic saved, or None
        key: array_spec(arrays["state/" + key]) if "state/" + key in arrays else None
        for key in network_header["state"]}
    header = {
        "format": FORMAT, "version": VERSION,
        "network": network_header,
        "optimizer": optimizer_header,
        "training": training_spec(trainer),
        "progress": {"current_iter": trainer.current_iter,
                     "current_epoch": trainer.current_epoch,
                     "max_iter": trainer.max_iter,
                     "epoch_time": float(trainer._epoch_time),
                     "epoch_steady": [int(trainer._epoch_steady_now[0]),
                                      float(trainer._epoch_steady_now[1])]},
        "rng": rng,
    }
    return header, arrays


def save(path, trainer):
    """Write ``trainer``'s state to ``path`` atomically (the old file stays until it is done)."""
    header, arrays = _capture(trainer)
    with atomic_write(path) as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(HEADER_NAME, json.dumps(header, allow_nan=False).encode("utf-8"))
            for name, array in arrays.items():
                with archive.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(array),
                                              allow_pickle=False)


# --- reading, strictly ---------------------------------------------------------------------

def _refuse(path, message):
    return CheckpointError(f"checkpoint {os.fspath(path)!r}: {message}")


def no_json_constants(name):
    raise ValueError(f"{name} is not allowed")


def _read_header(path, archive):
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise _refuse(path, "the archive repeats a member name")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise _refuse(path, f"member {info.filename!r} is compressed or encrypted; "
                                "fastconv writes stored members only")
    if HEADER_NAME not in names:
        raise _refuse(path, f"no {HEADER_NAME}: not a fastconv checkpoint")
    info = archive.getinfo(HEADER_NAME)
    if info.file_size > HEADER_LIMIT:
        raise _refuse(path, f"{HEADER_NAME} is {info.file_size} bytes (limit {HEADER_LIMIT})")
    try:
        header = json.loads(archive.read(HEADER_NAME).decode("utf-8"),
                            parse_constant=no_json_constants)
    except (ValueError, UnicodeDecodeError) as error:
        raise _refuse(path, f"{HEADER_NAME} is not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _refuse(path, "not a fastconv checkpoint (wrong format field)")
    if header.get("version") != VERSION:
        raise _refuse(path, f"format version {header.get('version')!r}; this fastconv reads "
                            f"version {VERSION}")
    return header


def _open(path):
    """The checkpoint file opened, or CheckpointError where it is not a regular file (a FIFO
    would block, a device such as /dev/zero never end)."""
    try:
        return open_regular(path)
    except (NotARegularFileError, IsADirectoryError) as exc:
        raise _refuse(path, exc.strerror) from None


def read_header(path):
    """The JSON header of the checkpoint at ``path`` (a dict), checked only for its format."""
    with _open(path) as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                return _read_header(path, archive)
        except CheckpointError:
            raise
        except _DAMAGE as error:
            raise _refuse(path, f"not a readable zip archive ({error})") from None


def _check_matches(path, header, trainer):
    """Refuse a checkpoint made for another network, optimizer or training set-up."""
    network = header.get("network")
    optimizer = header.get("optimizer")
    training = header.get("training")
    if not all(isinstance(part, dict) for part in (network, optimizer, training)):
        raise _refuse(path, "the header lacks its network, optimizer or training section")
    refusals = []
    expected = training_spec(trainer)
    fingerprint = expected.pop("data")
    messages = differences("setting", {k: v for k, v in training.items() if k != "data"},
                           expected)
    messages += data_differences(training.get("data"), fingerprint)
    if messages:
        refusals.append("another training run: " + listed(messages))

    expected = network_spec(trainer.network)
    if network.get("class") != expected["class"]:
        messages = [f"a {network.get('class')!r} network, not a {expected['class']!r}"]
    else:
        messages = differences("parameter", network.get("params") or {}, expected["params"])
        # running statistics: the same names; the shapes of those the checkpoint holds
        found_states = network.get("state") or {}
        messages += differences("running statistic", dict.fromkeys(found_states),
                                dict.fromkeys(expected["state"]))
        dtype = getattr(trainer.network, "dtype", None)  # the running statistics' dtype
        for key, spec in found_states.items():
            shape = expected["state"].get(key, ...)
            if spec is None:
                continue
            _, found_dtype = _checked_spec(path, key, spec)
            if shape is not ... and list(spec[0]) != list(shape):
                messages.append(f"running statistic {key!r} has shape {tuple(spec[0])} in "
                                f"the checkpoint, {tuple(shape)} here")
            if dtype is not None and found_dtype != np.dtype(dtype):
                messages.append(f"running statistic {key!r} is {found_dtype} in the "
                                f"checkpoint, {np.dtype(dtype)} here")
        # a checkpoint written before the structure was recorded has none to compare
        if "structure" in network:
            messages += structure_differences(network["structure"], expected["structure"])
    if messages:
        refusals.append("another network: " + listed(messages))

    expected = optimizer_spec(trainer.optimizer)
    if optimizer.get("class") != expected["class"]:
        messages = [f"the {optimizer.get('class')!r} optimizer, not {expected['class']!r}"]
    else:
        messages = differences("hyperparameter", optimizer.get("hyperparameters") or {},
                               expected["hyperparameters"])
    if messages:
        refusals.append("another optimizer: " + listed(messages))
    if refusals:
        raise _refuse(path, "it was made for " + " | and for ".join(refusals))


def _integer(path, name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _refuse(path, f"{name} must be an integer in [{low}, {high}]; got {value!r}")
    return value


def _real(path, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise _refuse(path, f"{name} must be a finite number; got {value!r}")
    return float(value)


def _check_progress(path, header, trainer):
    """The counters, validated against each other and against this Trainer's max_iter."""
    progress = header.get("progress")
    if not isinstance(progress, dict):
        raise _refuse(path, "the header lacks its progress section")
    step = progress.get("current_iter")
    if isinstance(step, int) and not isinstance(step, bool) and step > trainer.max_iter:
        raise _refuse(path, f"it is at step {step}, past this Trainer's last step "
                            f"(max_iter {trainer.max_iter}): give it more epochs to go on "
                            f"from there, or delete the checkpoint to start afresh")
    step = _integer(path, "current_iter", step, 0, trainer.max_iter)
    per_epoch = trainer.iter_per_epoch
    epoch = _integer(path, "current_epoch", progress.get("current_epoch"), 0, 2**62)
    if epoch != -(-step // per_epoch):  # an epoch is counted at its first step
        raise _refuse(path, f"current_epoch {epoch} does not fit current_iter {step}")
    steady = progress.get("epoch_steady")
    if not isinstance(steady, list) or len(steady) != 2:
        raise _refuse(path, "epoch_steady must be a pair [steps, seconds]")
    return {"current_iter": step, "current_epoch": epoch,
            "epoch_time": _real(path, "epoch_time", progress.get("epoch_time")),
            "epoch_steady": (_integer(path, "epoch_steady steps", steady[0], 0, per_epoch),
                             _real(path, "epoch_steady seconds", steady[1])),
            "lengths": {"train_loss": step, "train_acc": epoch, "test_acc": epoch,
                        "epoch_time": step // per_epoch}}


def _check_optimizer_state(path, header, trainer, param_specs):
    """{array name: (shape, dtype)} of the optimizer's state, and its iter (or None)."""
    optimizer = header["optimizer"]
    names = optimizer_state_names(trainer.optimizer)
    present = optimizer.get("state")
    if not isinstance(present, dict) or set(present) != set(names) \
            or not all(isinstance(flag, bool) for flag in present.values()):
        raise _refuse(path, f"optimizer state must list {list(names)} as true/false; "
                            f"got {present!r}")
    manifest = {f"optimizer/{name}/{key}": spec for name in names if present[name]
                for key, spec in param_specs.items()}
    count = optimizer.get("iter")
    if hasattr(trainer.optimizer, "iter"):
        count = _integer(path, "optimizer iter", count, 0, 2**62)
    elif count is not None:
        raise _refuse(path, f"optimizer iter {count!r} for an optimizer that has none")
    return manifest, present, count


def checked_legacy_fields(path, legacy):
    """(pos, has_gauss, cached_gaussian) of the fields ``legacy_random_state`` wrote, each
    checked for its type and range; CheckpointError naming path otherwise."""
    if legacy.get("bit_generator") != "MT19937":
        raise _refuse(path, f"np.random state of {legacy.get('bit_generator')!r}, "
                            "expected 'MT19937'")
    return (_integer(path, "np.random pos", legacy.get("pos"), 0, MT19937_WORDS),
            _integer(path, "np.random has_gauss", legacy.get("has_gauss"), 0, 1),
            _real(path, "np.random cached_gaussian", legacy.get("cached_gaussian")))


def _check_rng(path, header, trainer):
    rng = header.get("rng")
    if not isinstance(rng, dict) or not isinstance(rng.get("legacy"), dict):
        raise _refuse(path, "the header lacks the np.random state")
    legacy_state = checked_legacy_fields(path, rng["legacy"])
    generator = rng.get("generator")
    if (generator is None) != (trainer.rng is None):
        raise _refuse(path, "the Trainer's own generator is "
                            + ("missing" if generator is None else "unexpected")
                            + " in the checkpoint")
    if generator is not None:
        expected = trainer.rng.bit_generator.state
        if not isinstance(generator, dict) or set(generator) != set(expected) \
                or generator.get("bit_generator") != expected["bit_generator"]:
            raise _refuse(path, "the Trainer's generator state does not have the fields of a "
                                f"{expected['bit_generator']} state")
    return legacy_state, generator


def _read_array(path, archive, name, shape, dtype):
    """One ``.npy`` member, its header checked against ``shape`` and ``dtype`` before reading."""
    member_name = name + ".npy"
    with archive.open(member_name) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                found_shape, fortran, found_dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                found_shape, fortran, found_dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as error:
            raise _refuse(path, f"{member_name}: bad .npy header ({error})") from None
        if found_dtype != dtype or tuple(found_shape) != tuple(shape) or fortran:
            raise _refuse(path, f"{member_name} holds {found_dtype} {tuple(found_shape)}"
                                f"{' (Fortran order)' if fortran else ''}; expected "
                                f"{dtype} {tuple(shape)}")
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        data = member.read(size)
        if len(data) != size or member.read(1):
            raise _refuse(path, f"{member_name} has {len(data)} data bytes; expected {size}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _size_limit(trainer):
    """The largest file a checkpoint of this Trainer's network can be, in either mode and with
    any optimizer: a checkpoint of another mode or optimizer is then refused by its header,
    naming the difference, not by its size."""
    param_bytes = 8 * sum(np.size(v) for v in trainer.network.params.values())  # float64
    # params, BN stats, and the optimizer's state: Adam's m and v are the most any keeps
    copies = 2 + max(2, len(optimizer_state_names(trainer.optimizer)))
    list_bytes = 8 * (trainer.max_iter + 3 * (trainer.max_iter // trainer.iter_per_epoch + 1)
                      + 2 * (trainer.max_iter // trainer.iter_per_epoch + 1))
    members = (copies + 1) * max(len(trainer.network.params), 1) + 16
    return (HEADER_LIMIT + copies * param_bytes + 4 * MT19937_WORDS + list_bytes
            + members * MEMBER_OVERHEAD)


def _checked_spec(path, name, spec):
    """A ``[shape, dtype]`` pair from the header: small non-negative integers and a float type."""
    if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], list)
            and len(spec[0]) <= 8):
        raise _refuse(path, f"{name} must be described as [shape, dtype]; got {spec!r}")
    for size in spec[0]:
        _integer(path, f"a dimension of {name}", size, 0, 2**40)
    return tuple(spec[0]), _dtype(path, name, spec[1])


def _dtype(path, name, text):
    try:
        dtype = np.dtype(text) if isinstance(text, str) else None
    except TypeError:
        dtype = None
    if dtype not in _FLOATS:
        raise _refuse(path, f"{name} must be float32 or float64; got {text!r}")
    return dtype


def load(path, trainer):
    """Read the checkpoint at ``path`` and put ``trainer`` in the state it records.

    Everything is checked first; on any error ``CheckpointError`` names the problem and
    neither the Trainer, its network and optimizer, nor ``np.random`` has changed.
    """
    with _open(path) as handle:
        size, limit = os.fstat(handle.fileno()).st_size, _size_limit(trainer)
        if size > limit:
            raise _refuse(path, f"{size} bytes, more than a checkpoint of this network and "
                                f"max_iter can be ({limit})")
        try:
            with zipfile.ZipFile(handle) as archive:
                header = _read_header(path, archive)
                _check_matches(path, header, trainer)
                progress = _check_progress(path, header, trainer)
                network = header["network"]
                params = {key: _checked_spec(path, key, spec)
                          for key, spec in network["params"].items()}
                manifest = {"params/" + key: spec for key, spec in params.items()}
                for key, spec in (network.get("state") or {}).items():
                    if spec is not None:
                        manifest["state/" + key] = _checked_spec(path, key, spec)
                optimizer_manifest, present, count = _check_optimizer_state(
                    path, header, trainer, params)
                manifest.update(optimizer_manifest)
                manifest["rng/legacy_keys"] = ((MT19937_WORDS,), np.dtype(np.uint32))
                for name, length in progress["lengths"].items():
                    manifest["lists/" + name] = ((length,), np.dtype(np.float64))
                manifest["lists/epoch_steady"] = ((progress["lengths"]["epoch_time"], 2),
                                                  np.dtype(np.float64))
                legacy_state, generator = _check_rng(path, header, trainer)

                members = set(archive.namelist()) - {HEADER_NAME}
                wanted = {name + ".npy" for name in manifest}
                if members != wanted:
                    extra, missing = sorted(members - wanted), sorted(wanted - members)
                    raise _refuse(path, f"unexpected members {extra}, missing members {missing}")
                arrays = {name: _read_array(path, archive, name, shape, dtype)
                          for name, (shape, dtype) in manifest.items()}
        except CheckpointError:
            raise
        except _DAMAGE as error:
            raise _refuse(path, f"not a readable zip archive ({error})") from None

    # a generator state with the right fields can still hold bad values: try it on a copy
    if generator is not None:
        try:
            type(trainer.rng.bit_generator)().state = generator
        except (TypeError, ValueError) as error:
            raise _refuse(path, f"bad generator state ({error})") from None

    _restore(trainer, arrays, progress, present, count, legacy_state, generator)
    return header


def _restore(trainer, arrays, progress, present, count, legacy_state, generator):
    """Write the checked state back; nothing here can fail on a checked file."""
    network, optimizer = trainer.network, trainer.optimizer
    for key in network.params:
        network.params[key][...] = arrays["params/" + key]
    if hasattr(network, "_rebind"):
        network._rebind()
    for key, (layer, attr, _) in state_slots(network).items():
        setattr(layer, attr, arrays.get("state/" + key))
    for name, is_present in present.items():
        setattr(optimizer, name, {key: arrays[f"optimizer/{name}/{key}"]
                                  for key in network.params} if is_present else None)
    if count is not None:
        optimizer.iter = count
    np.random.set_state(("MT19937", arrays["rng/legacy_keys"]) + legacy_state)
    if generator is not None:
        trainer.rng.bit_generator.state = generator

    trainer.current_iter = progress["current_iter"]
    trainer.current_epoch = progress["current_epoch"]
    trainer._epoch_time = progress["epoch_time"]
    trainer._epoch_steady_now = list(progress["epoch_steady"])
    # the same element types as the lists an uninterrupted run builds: accuracies are
    # np.float64, losses too in parity mode (the book's), plain floats in fast mode
    losses = arrays["lists/train_loss"]
    trainer.train_loss_list = list(losses) if trainer.mode == "parity" else losses.tolist()
    trainer.train_acc_list = list(arrays["lists/train_acc"])
    trainer.test_acc_list = list(arrays["lists/test_acc"])
    trainer.epoch_time_list = arrays["lists/epoch_time"].tolist()
    trainer._epoch_steady = [(int(steps), seconds)
                             for steps, seconds in arrays["lists/epoch_steady"].tolist()]
