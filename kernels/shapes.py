"""Output geometry shared by both backends."""


def conv_output_hw(H, W, filter_h, filter_w, stride, pad):
    """(out_h, out_w) of a sliding window; floor division, like the book's im2col."""
    return (H + 2 * pad - filter_h) // stride + 1, (W + 2 * pad - filter_w) // stride + 1
