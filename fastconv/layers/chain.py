"""Consecutive conv blocks, and the affine layer after them, run as one pass over the batch.

Each part of the batch (``fastconv.kernels.jit.gemm.pieces``) takes its own images through
every block, and through the affine layer's product, without waiting for the other parts:
no image needs another's. Run block by block, each block handed half the batch to the pool
thread and waited for it, forward and backward, and waking that thread's idle core costs
about 100 us on the reference machine (``docs/performance-history.md``): 13 times in a DeepConvNet
step. A chain hands over once forward and once backward (and once more where a float32
affine layer's weights are large: see ``AFFINE_IN_PARTS_MAX_BYTES`` in the jit kernels).

Every layer is left as its own forward and backward passes leave it, with the same numbers
to rounding (the affine layer's products are cut into other pieces). Where a step's operands
are not the usual ones (weights that make a block compute in another dtype, an affine
layer that ``Affine.weights_for`` turns down), or a script turned off the input gradient of
a layer inside the chain, the chain runs its steps one after another.
"""
import numpy as np

from fastconv.backend import kernels

from .fused import ConvReluBlock
from .linear import Affine

__all__ = ["BlockChain", "chain"]


class BlockChain:
    def __init__(self, blocks, affine=None):
        self.blocks, self.affine = list(blocks), affine
        self._chained = False  # whether the last forward pass ran as one

    @property
    def steps(self):
        return self.blocks + ([] if self.affine is None else [self.affine])

    def forward(self, x, with_argmax=True):
        """The last step's output; ``with_argmax=False`` when no backward pass will follow."""
        self._chained = False
        operands = self._kernel_operands(x)
        if operands is None:
            for block in self.blocks:
                x = block.forward(x, with_argmax)
            return x if self.affine is None else self.affine.forward(x)
        x, blocks, W2 = operands
        results, product = kernels().conv_blocks_forward(x, blocks, W2, with_argmax)
        for block, (out, argmax, ctx) in zip(self.blocks, results):
            x = block.keep(x, ctx, out, argmax)
        self._chained = True
        return x if self.affine is None else self.affine.finish_forward(x, product)

    def _kernel_operands(self, x):
        """(x, [each block's operands], the affine weights or None) as
        ``conv_blocks_forward`` takes them, each checked as the step's own forward checks it;
        None where a step would not compute in x's dtype as it comes."""
        x, operands, shape = self.blocks[0].operands(x)
        blocks = [operands]
        for block in self.blocks[1:]:
            # the block's input is not computed yet: its checks need only shape and dtype
            stand_in = np.broadcast_to(np.zeros((), x.dtype), shape)
            converted, operands, shape = block.operands(stand_in)
            if converted.dtype != x.dtype:
                return None
            blocks.append(operands)
        W2 = None
        if self.affine is not None:
            W2 = self.affine.weights_for(shape, x.dtype)
            if W2 is None:
                return None
        return x, blocks, W2

    def backward(self, dout):
        inner = [block.conv for block in self.blocks[1:]] + self.steps[len(self.blocks):]
        if not self._chained or not all(layer.need_input_grad for layer in inner):
            for step in reversed(self.steps):
                dout = step.backward(dout)
            return dout
        saved = [block.saved_operands() for block in self.blocks]
        affine = None
        if self.affine is None:
            dout = self.blocks[-1].checked_dout(dout)
        else:
            dout, x2, W2 = self.affine.backward_operands(dout)
            affine = (x2, W2)
        dx, grads, affine_grads = kernels().conv_blocks_backward(
            dout, saved, self.blocks[0].conv.need_input_grad, affine)
        for block, (dW, db) in zip(self.blocks, grads):
            block.conv.dW, block.conv.db = dW, db
        if affine_grads is not None:
            self.affine.dW, self.affine.db = affine_grads
        return dx


def chain(steps):
    """The steps with each run of consecutive ``ConvReluBlock``s, and an ``Affine`` layer
    right after it, as one ``BlockChain`` (exact types: a subclass keeps its own methods); a
    lone block with no affine layer after it stays as it is."""
    result, i = [], 0
    while i < len(steps):
        end = i
        while end < len(steps) and type(steps[end]) is ConvReluBlock:
            end += 1
        affine = steps[end] if end < len(steps) and type(steps[end]) is Affine else None
        if end - i >= 2 or (end > i and affine is not None):
            result.append(BlockChain(steps[i:end], affine))
            i = end + (affine is not None)
        else:
            result.append(steps[i])
            i += 1
    return result
