"""Cells of an int64 array that two threads share: sequentially consistent loads, stores and
compare-and-swap in compiled code, and the x86 spin hint.

Run as Python (``NUMBA_DISABLE_JIT``, or a kernel's ``py_func``), plain indexing under the GIL
is ordered already, and there is no spin hint.
"""
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .compile_options import compiled_as

__all__ = ["load", "store", "compare_exchange", "spin_hint"]

# x86's pause as the LLVM intrinsic: Numba's JIT has no assembler for inline asm
_SPIN_HINT = ("llvm.x86.sse2.pause" if platform.machine().lower() in ("x86_64", "amd64")
              else None)


def load(cells, index):
    return cells[index]


def store(cells, index, value):
    cells[index] = value


def compare_exchange(cells, index, expected, new):
    """cells[index] = new if it holds expected; whether it did."""
    if cells[index] != expected:
        return False
    cells[index] = new
    return True


def spin_hint():
    pass


def _cell_pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index])


@intrinsic
def _atomic_load(typingctx, cells, index):
    def codegen(context, builder, signature, args):
        pointer = _cell_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "seq_cst", 8)
    return types.int64(cells, index), codegen


@intrinsic
def _atomic_store(typingctx, cells, index, value):
    def codegen(context, builder, signature, args):
        pointer = _cell_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], pointer, "seq_cst", 8)
        return context.get_dummy_value()
    return types.void(cells, index, types.int64), codegen


@intrinsic
def _atomic_compare_exchange(typingctx, cells, index, expected, new):
    def codegen(context, builder, signature, args):
        pointer = _cell_pointer(context, builder, signature.args[0], args[0], args[1])
        outcome = builder.cmpxchg(pointer, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(outcome, 1)
    return types.boolean(cells, index, types.int64, types.int64), codegen


@intrinsic
def _pause(typingctx):
    # tells the core that this is a wait loop: less power, and an SMT sibling runs faster
    def codegen(context, builder, signature, args):
        if _SPIN_HINT is not None:
            hint = cgutils.get_or_insert_function(builder.module,
                                                  ir.FunctionType(ir.VoidType(), []), _SPIN_HINT)
            builder.call(hint, [])
        return context.get_dummy_value()
    return types.void(), codegen


compiled_as(load, _atomic_load)
compiled_as(store, _atomic_store)
compiled_as(compare_exchange, _atomic_compare_exchange)
compiled_as(spin_hint, _pause)
