"""Plain NumPy implementations of the paper's formulas, written independently of the layers."""

import numpy as np


def resize_bilinear(x, out_h, out_w):
    """Half-pixel-centre bilinear resize of (N, H, W, C), loop over output pixels."""
    n, h, w, c = x.shape
    out = np.zeros((n, out_h, out_w, c), dtype=np.float64)

    def source(i, in_size, out_size):
        s = (i + 0.5) * in_size / out_size - 0.5
        s = min(max(s, 0.0), in_size - 1.0)
        lo = int(np.floor(s))
        return lo, min(lo + 1, in_size - 1), s - lo

    for i in range(out_h):
        y0, y1, fy = source(i, h, out_h)
        for j in range(out_w):
            x0, x1, fx = source(j, w, out_w)
            top = x[:, y0, x0] * (1 - fx) + x[:, y0, x1] * fx
            bottom = x[:, y1, x0] * (1 - fx) + x[:, y1, x1] * fx
            out[:, i, j] = top * (1 - fy) + bottom * fy
    return out


def scaled(size, scale):
    return max(1, int(np.round(np.float32(size) * np.float32(scale))))


def conv_same(x, kernel, bias, dilation=1):
    """'same' convolution (TensorFlow's padding: the extra pixel goes after)."""
    ks = kernel.shape[0]
    total = dilation * (ks - 1)
    before = total // 2
    xp = np.pad(x, ((0, 0), (before, total - before), (before, total - before), (0, 0)))
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for a in range(ks):
        for b in range(ks):
            patch = xp[:, a * dilation : a * dilation + h, b * dilation : b * dilation + w, :]
            out += np.einsum("nhwc,cf->nhwf", patch, kernel[a, b])
    return out + bias


def ms_conv(x, kernels, biases, scales=(1.0,), dilations=None):
    """Equation 1: y_ij = F_j(Resize_i(x)); loops over scales and kernel groups."""
    outputs = []
    pathways = [(1.0, d) for d in dilations] if dilations else [(s, 1) for s in scales]
    for scale, dilation in pathways:
        xi = x if scale == 1.0 else resize_bilinear(x, scaled(x.shape[1], scale), scaled(x.shape[2], scale))
        outputs.append(
            np.concatenate([conv_same(xi, k, b, dilation) for k, b in zip(kernels, biases)], axis=-1)
        )
    return outputs


def magnitude_norm(ys, gammas, betas, means, variances, sw, epsilon, training):
    out = []
    for i, y in enumerate(ys):
        if training:
            mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
        else:
            mean, var = means[i], variances[i]
        out.append(((y - mean) / np.sqrt(var + epsilon) * gammas[i] + betas[i]) * sw[i])
    return out


def softmax(theta, axis=0):
    e = np.exp(theta - theta.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def top_k_pool(inputs, theta, k):
    """Equation 2 per bag and channel: sum_r w_r a_r, w = softmax(theta)."""
    flat = np.concatenate([x.reshape(x.shape[0], -1, x.shape[-1]) for x in inputs], axis=1)
    w = softmax(theta, axis=0)
    out = np.zeros((flat.shape[0], flat.shape[2]))
    for b in range(flat.shape[0]):
        for j in range(flat.shape[2]):
            a = np.sort(flat[b, :, j])[::-1][:k]
            wj = w[:, j] if w.ndim == 2 else w
            out[b, j] = np.sum(wj * a)
    return out, flat


def top_k_grad_theta(flat, theta, k):
    """d sum(out) / d theta for shared weights: sum_{b,j} J^T a, J = diag(w) - w w^T."""
    w = softmax(theta)
    jac = np.diag(w) - np.outer(w, w)
    grad = np.zeros_like(theta)
    for b in range(flat.shape[0]):
        for j in range(flat.shape[2]):
            a = np.sort(flat[b, :, j])[::-1][:k]
            grad += jac.T @ a
    return grad


def attention_pool(x, v, w, u=None):
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    hidden = np.tanh(flat @ v)
    if u is not None:
        hidden = hidden * (1 / (1 + np.exp(-(flat @ u))))
    e = (hidden @ w)[..., 0]
    a = softmax(e, axis=1)
    return np.einsum("bn,bnf->bf", a, flat), a
