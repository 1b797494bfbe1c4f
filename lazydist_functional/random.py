r"""Explicit random keys: JAX's counter-based PRNG model in torch.

A *key* is a value, not a state: an ``int64`` tensor of shape ``(2,)`` holding two
unsigned 32-bit words (a pytree leaf like any other tensor). New keys come from
:func:`split` and :func:`fold_in`; a draw is a pure function of ``(key, position)``.
Nothing here touches torch's global generator, so the same key gives the same numbers
eagerly, under :func:`torch.func.vmap` (a batched key is one stream per member, no
``randomness=`` argument needed), under :func:`torch.compile` and on any device.

The generator is Threefry-2x32 with 20 rounds (Salmon et al., 2011), written with
torch integer ops on ``int32`` bit patterns (wrap-around addition), vectorized over
positions and keys; keys and :func:`bits` are ``int64`` words in ``[0, 2^{32})``. Eager
draws update two buffers in place, a chunk of positions at a time (cache-sized); compiled,
the rounds fuse into one loop. The constructions follow ``jax.random`` with
``jax_threefry_partitionable=True`` (JAX's default since 0.5.0), so for the same seed

- :func:`key`, :func:`split`, :func:`fold_in`, :func:`bits`, :func:`uniform` on
  :math:`[0, 1)`, :func:`randint`, :func:`bernoulli` and :func:`categorical` equal
  ``jax.random``'s bit for bit (``key(seed)`` for ``0 <= seed < 2**32``; larger and
  negative seeds are bit-cast from 64 bits, as JAX does with ``jax_enable_x64``);
  :func:`uniform` on other bounds agrees to an ulp (XLA may fuse its multiply-add);
- ``split(k, n)[i] == fold_in(k, i)``, as in JAX;
- :func:`normal` is JAX's construction :math:`\sqrt2 \, \mathrm{erf}^{-1}(u)` with XLA's
  ``erf_inv`` (Giles' polynomial): ``float16`` and ``bfloat16`` equal ``jax.random.normal``
  bit for bit, ``float32`` agrees to 4 ulps (about 5% of draws differ, by XLA's ``log1p``
  and fused multiply-adds), ``float64`` (``torch.erfinv``) to a relative ``1e-10``.

Bits to floats. Position :math:`i` (row-major flat index in ``shape``) gets the block
:math:`(w_0, w_1) = \mathrm{Threefry}(k, (\lfloor i / 2^{32} \rfloor, i \bmod 2^{32}))`
and the 32 bits :math:`b_i = w_0 \oplus w_1`. A float with :math:`m` mantissa bits keeps
the top :math:`m` bits: :math:`u_i = \lfloor b_i / 2^{32-m} \rfloor \, 2^{-m}
\in \{0, 2^{-m}, \dots, 1 - 2^{-m}\}` (float64 uses :math:`(w_0, w_1)` as 64 bits), so
:func:`uniform` is in :math:`[0, 1)`: it can be 0, never 1. Where a logarithm or an
inverse CDF follows, :func:`uniform` is called with ``low`` the smallest positive
normal float (:func:`gumbel`) or on :math:`[-1 + 2^{-m}, 1)` (:func:`normal`), so no
draw is infinite.

Example:
    >>> k = key(0)
    >>> k
    tensor([0, 0])
    >>> k1, k2 = split(k)
    >>> bits(k, (3,))
    tensor([4070199207, 4202968722, 1427181096])
    >>> normal(k1, (2,)).shape, uniform(k2, (2,), low=-1.0, high=1.0).dtype
    (torch.Size([2]), torch.float32)
"""

from __future__ import annotations

__all__ = [
    "bernoulli",
    "bits",
    "categorical",
    "fold_in",
    "gumbel",
    "key",
    "normal",
    "permutation",
    "randint",
    "split",
    "threefry2x32",
    "uniform",
]

import math
from collections.abc import Callable, Sequence

import torch
from torch import Size, Tensor

from .checks import InputTypeError, ShapeError
from .special import erfinv32

_MASK = 0xFFFFFFFF
_SIGN = 0x80000000
_PARITY = 0x1BD11BDA - 2**32 * (0x1BD11BDA >= 2**31)  # as an int32 bit pattern
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_INTEGERS = (torch.int64, torch.int32, torch.uint32)
_MANTISSA = {torch.float64: 52, torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}
_SQRT2 = {dt: float(torch.tensor(math.sqrt(2.0), dtype=dt)) for dt in _MANTISSA}  # as each dtype rounds it (JAX)
_CHUNK = 2**15  # eager draws are made this many words at a time, to stay in cache


def _check_key(k: Tensor, what: str = "key") -> None:
    if not isinstance(k, Tensor) or k.dtype not in _INTEGERS:
        got = f"a tensor of dtype {k.dtype}" if isinstance(k, Tensor) else type(k).__name__
        raise InputTypeError(f"{what} should be an integer tensor made by random.key/split/fold_in, got {got}")
    if k.dim() == 0 or k.shape[-1] != 2:
        raise ShapeError(f"{what} should have shape (..., 2) (two 32-bit words), got shape {tuple(k.shape)}")


def _shape(shape: int | Sequence[int]) -> Size:
    return Size((shape,)) if isinstance(shape, int) else Size(shape)


def _int32(x: Tensor) -> Tensor:
    r"""The low 32 bits of integers as ``int32`` bit patterns (two's complement)."""

    return (((x.to(torch.int64) & _MASK) ^ _SIGN) - _SIGN).to(torch.int32)


def _uint(x: Tensor) -> Tensor:
    r"""``int32`` bit patterns as unsigned words in :math:`[0, 2^{32})`, ``int64``."""

    return x.to(torch.int64) & _MASK


def _threefry(k0: Tensor, k1: Tensor, x0: Tensor | None, x1: Tensor) -> tuple[Tensor, Tensor]:
    r"""Threefry-2x32, 20 rounds, on ``int32`` bit patterns (broadcasting; ``x0=None`` is 0).

    ``int32`` addition wraps modulo :math:`2^{32}`, exclusive or and left shifts act on the
    bit patterns, and a rotation is :math:`(x \ll r) \mid ((x \gg (32 - r)) \mathbin{\&}
    (2^r - 1))` (the mask undoes the arithmetic shift's sign extension); eagerly the shift
    left and the or are one ``add(y, x, alpha=2^r)`` (disjoint bits), five kernels a mix.
    """

    k2 = k0 ^ k1 ^ _PARITY
    ks = (k0, k1, k2)
    x1 = x1 + k1
    x0 = x1 + k0 if x0 is None else x1 + (x0 + k0)  # the first round's addition done
    compiling = torch.compiler.is_compiling()
    for i in range(5):
        for j, r in enumerate(_ROTATIONS[i % 2]):
            if i or j:
                x0 += x1
            y = x1 >> (32 - r)
            y &= (1 << r) - 1
            if compiling:  # shifts, which a compiler vectorizes best
                y |= x1 << r
            else:  # one kernel for x1 << r and the or: the bits are disjoint, so + is |
                y.add_(x1, alpha=1 << r)
            y ^= x0
            x1 = y
        x0 += ks[(i + 1) % 3]
        x1 += ks[(i + 2) % 3] + (i + 1)
    return x0, x1


def threefry2x32(key: Tensor, counter: Tensor) -> Tensor:
    r"""The Threefry-2x32 block function (20 rounds): ``key`` and ``counter`` of shapes
    ``(..., 2)`` that broadcast, words in :math:`[0, 2^{32})`; returns the two output words.

    Example (a Random123 known-answer vector):
        >>> [hex(w) for w in threefry2x32(torch.tensor([0x13198A2E, 0x03707344]),
        ...                              torch.tensor([0x243F6A88, 0x85A308D3])).tolist()]
        ['0xc4923a9c', '0x483df7a0']
    """

    _check_key(key)
    _check_key(counter, "counter")
    key, counter = _int32(key), _int32(counter)
    w0, w1 = _threefry(key[..., 0], key[..., 1], counter[..., 0], counter[..., 1])
    return _uint(torch.stack([w0, w1], dim=-1))


def _draw(k: Tensor, shape: Size, finish: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    r"""``finish(w0, w1)`` of the Threefry blocks (``int32``, shape ``(*K, m)``) of the
    positions of ``shape`` (row-major) under each key of ``k`` (``(*K, 2)``), shaped
    ``(*K, *shape)``. ``finish`` may overwrite its arguments. Eagerly, long draws are made
    :data:`_CHUNK` words at a time (a draw depends only on its position, so the chunks
    change no bit); compiled, in one piece.
    """

    _check_key(k)
    batch, n = k.shape[:-1], shape.numel()
    k = _int32(k)
    k0, k1 = k[..., 0].unsqueeze(-1), k[..., 1].unsqueeze(-1)
    dev = k.device

    def piece(start: int, stop: int) -> Tensor:
        if stop <= 2**31:
            return finish(*_threefry(k0, k1, None, torch.arange(start, stop, dtype=torch.int32, device=dev)))
        index = torch.arange(start, stop, dtype=torch.int64, device=dev)
        return finish(*_threefry(k0, k1, _int32(index >> 32), _int32(index)))

    step = max(1024, _CHUNK // max(1, batch.numel()))
    if torch.compiler.is_compiling() or n <= step:
        out = piece(0, n)
    else:
        out = torch.cat([piece(a, min(n, a + step)) for a in range(0, n, step)], dim=len(batch))
    return out.reshape(*batch, *shape, *out.shape[len(batch) + 1 :])


def _words(w0: Tensor, w1: Tensor) -> Tensor:
    return _uint(torch.stack([w0, w1], dim=-1))


def key(seed: int | Tensor, device: torch.device | str | None = None) -> Tensor:
    r"""A key from an integer seed: the seed's 64 bits as two 32-bit words ``[hi, lo]``
    (``jax.random.key(seed)``'s data). A tensor of seeds gives a batch of keys.

    Example:
        >>> key(42), key(2**32 + 5), key(torch.tensor([1, 2])).shape
        (tensor([ 0, 42]), tensor([1, 5]), torch.Size([2, 2]))
    """

    if isinstance(seed, Tensor):
        if seed.is_floating_point() or seed.is_complex() or seed.dtype == torch.bool:
            raise InputTypeError(f"random.key needs an integer seed, got a tensor of dtype {seed.dtype}")
        s = seed.to(dtype=torch.int64, device=device)
    elif isinstance(seed, int) and not isinstance(seed, bool):
        if not -(2**63) <= seed < 2**64:
            raise ValueError(f"random.key needs a seed in [-2**63, 2**64), got {seed}")
        s = torch.tensor(seed - 2**64 if seed >= 2**63 else seed, dtype=torch.int64, device=device)
    else:
        raise InputTypeError(f"random.key needs an int or an integer tensor, got {type(seed).__name__}")
    return torch.stack([(s >> 32) & _MASK, s & _MASK], dim=-1)


def split(key: Tensor, num: int | Sequence[int] = 2) -> Tensor:
    r"""``num`` new keys (an int or a shape): shape ``(*K, *num, 2)`` for keys ``(*K, 2)``.
    Key :math:`j` is the Threefry block of counter :math:`j` (JAX's ``split``).

    Example:
        >>> split(key(0), 2)
        tensor([[1797259609, 2579123966],
                [ 928981903, 3453687069]])
    """

    return _draw(key, _shape(num), _words)


def fold_in(key: Tensor, data: int | Tensor) -> Tensor:
    r"""A new key from ``key`` and an integer ``data`` (taken modulo :math:`2^{32}`): the
    Threefry block of counter ``(0, data)``. A tensor ``data`` of shape ``D`` gives keys
    ``broadcast(K, D) + (2,)``.

    Example:
        >>> fold_in(key(0), 1).tolist() == split(key(0), 2)[1].tolist()
        True
    """

    _check_key(key)
    k = _int32(key)
    d = torch.as_tensor(data, device=key.device)
    if d.is_floating_point() or d.dtype == torch.bool:
        raise InputTypeError(f"fold_in needs integer data, got dtype {d.dtype}")
    return _words(*_threefry(k[..., 0], k[..., 1], None, _int32(d)))


def bits(key: Tensor, shape: int | Sequence[int] = (), width: int = 32) -> Tensor:
    r"""Uniform random bits of ``width`` 8, 16, 32 or 64, as ``int64`` of shape
    ``(*K, *shape)``: :math:`w_0 \oplus w_1` (its low ``width`` bits), or for 64 the
    signed integer of the bit pattern :math:`w_0 \cdot 2^{32} + w_1` (JAX's ``bits``).

    Example:
        >>> bits(key(1), (2,), width=8)
        tensor([183,  62])
    """

    if width not in (8, 16, 32, 64):
        raise ValueError(f"bits: width should be 8, 16, 32 or 64, got {width}")

    def finish(w0: Tensor, w1: Tensor) -> Tensor:
        if width == 64:  # the signed high word (an int32 already) above the unsigned low one
            return (w0.to(torch.int64) << 32) | _uint(w1)
        w0 ^= w1
        return _uint(w0) if width == 32 else (w0 & ((1 << width) - 1)).to(torch.int64)

    return _draw(key, _shape(shape), finish)


def _dtype(dtype: torch.dtype | None) -> torch.dtype:
    dtype = dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise InputTypeError(f"expected a floating-point dtype, got {dtype}")
    return dtype


def _unit(w0: Tensor, w1: Tensor, dtype: torch.dtype) -> Tensor:
    r""":math:`[0, 1)` on the grid :math:`2^{-m}`, ``m`` the dtype's mantissa bits: the top
    ``m`` of the dtype's width of bits, :math:`k`, as :math:`k \, 2^{-m}` (exact: the value of
    the float in :math:`[1, 2)` with mantissa :math:`k`, minus 1, without reinterpreting bits,
    which torch 2.11's ``vmap`` cannot batch). Overwrites ``w0``."""

    if dtype == torch.float64:
        hi = _uint(w0)
        hi <<= 20
        hi |= _uint(w1) >> 12
        return hi.to(torch.float64).mul_(2.0**-52)
    m = _MANTISSA[dtype]
    width = 8 if m < 8 else torch.finfo(dtype).bits
    w0 ^= w1
    w0 >>= width - m
    w0 &= (1 << m) - 1
    u = w0.to(torch.float32).mul_(2.0**-m)
    return u if dtype == torch.float32 else u.to(dtype)


def _floats(
    key: Tensor,
    shape: int | Sequence[int],
    dtype: torch.dtype,
    low: float | Tensor,
    high: float | Tensor,
    then: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    r"""``then(uniform(...))``, made chunk by chunk where ``low`` and ``high`` are numbers
    (``then`` may work in place)."""

    if dtype not in _MANTISSA:
        raise InputTypeError(f"random floats support {sorted(map(str, _MANTISSA))}, got {dtype}")
    scalars = not isinstance(low, Tensor) and not isinstance(high, Tensor)
    low_t = torch.as_tensor(low, dtype=dtype, device=key.device) if scalars else None

    def finish(w0: Tensor, w1: Tensor) -> Tensor:
        u = _unit(w0, w1, dtype)
        if scalars:  # max(low, u (high - low) + low), each step rounded as out of place
            u = u.mul_(high - low_t).add_(low_t).clamp_min_(low_t)
            u = then(u) if then is not None else u
        return u

    u = _draw(key, _shape(shape), finish)
    if not scalars:
        low = torch.as_tensor(low, dtype=dtype, device=u.device)
        u = torch.maximum(low, u * (high - low) + low)
        u = then(u) if then is not None else u
    return u


def uniform(
    key: Tensor,
    shape: int | Sequence[int] = (),
    dtype: torch.dtype | None = None,
    low: float | Tensor = 0.0,
    high: float | Tensor = 1.0,
) -> Tensor:
    r""":math:`\mathcal{U}[\text{low}, \text{high})`: :math:`\max(\text{low}, \text{low} +
    (\text{high} - \text{low}) u)`, :math:`u` on the mantissa grid above (JAX's ``uniform``).

    Example:
        >>> uniform(key(0), (3,))
        tensor([0.9477, 0.9786, 0.3323])
    """

    return _floats(key, shape, _dtype(dtype), low, high)


def normal(key: Tensor, shape: int | Sequence[int] = (), dtype: torch.dtype | None = None) -> Tensor:
    r""":math:`\mathcal{N}(0, 1)`: :math:`\sqrt 2 \, \mathrm{erf}^{-1}(u)`, :math:`u \sim
    \mathcal{U}[-1 + \epsilon, 1)` (:math:`\epsilon` the float just above -1), never
    infinite (JAX's ``normal``). For ``float32``, ``float16`` and ``bfloat16``,
    :math:`\mathrm{erf}^{-1}` is XLA's: Giles' polynomial in ``float32`` (then rounded to
    the dtype), a few fused elementwise ops when compiled; for ``float64``,
    ``torch.erfinv``.

    Example:
        >>> normal(key(0), (3,))
        tensor([ 1.6226,  2.0253, -0.4336])
    """

    dtype = _dtype(dtype)
    low = math.nextafter(-1.0, 0.0) if dtype == torch.float64 else -1.0 + torch.finfo(dtype).eps / 2
    sqrt2 = _SQRT2[dtype] if dtype in _SQRT2 else math.sqrt(2.0)
    if dtype == torch.float64:
        return _floats(key, shape, dtype, low, 1.0, lambda u: u.erfinv_().mul_(sqrt2))
    if dtype == torch.float32:
        return _floats(key, shape, dtype, low, 1.0, lambda u: erfinv32(u).mul_(sqrt2))
    return _floats(key, shape, dtype, low, 1.0, lambda u: erfinv32(u.float()).to(dtype).mul_(sqrt2))


def gumbel(key: Tensor, shape: int | Sequence[int] = (), dtype: torch.dtype | None = None) -> Tensor:
    r"""Standard Gumbel: :math:`-\log(-\log u)`, :math:`u \sim \mathcal{U}[\text{tiny}, 1)`."""

    dtype = _dtype(dtype)
    return _floats(key, shape, dtype, torch.finfo(dtype).tiny, 1.0, lambda u: u.log_().neg_().log_().neg_())


def bernoulli(key: Tensor, p: float | Tensor = 0.5, shape: int | Sequence[int] | None = None) -> Tensor:
    r"""``True`` with probability ``p``: :math:`u < p` (``shape`` defaults to ``p``'s shape).

    Example:
        >>> bernoulli(key(0), torch.tensor([0.0, 1.0]))
        tensor([False,  True])
    """

    p = torch.as_tensor(p)
    dtype = p.dtype if p.is_floating_point() else None
    return uniform(key, p.shape if shape is None else shape, dtype) < p


def categorical(key: Tensor, logits: Tensor, dim: int = -1, shape: int | Sequence[int] | None = None) -> Tensor:
    r"""Indices drawn with probabilities :math:`\mathrm{softmax}(\text{logits})` along
    ``dim``, by Gumbel-max (JAX's ``categorical``). ``shape`` (default: the logits' shape
    without ``dim``) must broadcast with it.

    Example:
        >>> categorical(key(0), torch.tensor([[-1e9, 0.0], [0.0, -1e9]]))
        tensor([1, 0])
    """

    dim = dim % logits.dim()
    batch = logits.shape[:dim] + logits.shape[dim + 1 :]
    shape = batch if shape is None else _shape(shape)
    prefix, tail = shape[: len(shape) - len(batch)], list(shape[len(shape) - len(batch) :])
    tail.insert(dim, logits.shape[dim])  # the category axis where the logits have it, as JAX does
    noise = gumbel(key, (*prefix, *tail), logits.dtype)
    return torch.argmax(logits + noise, dim=len(prefix) + dim)


def randint(key: Tensor, shape: int | Sequence[int], low: int, high: int) -> Tensor:
    r"""Integers uniform on :math:`[\text{low}, \text{high})` (``int64``), a span below
    :math:`2^{32}`, as JAX's ``randint`` for ``int32``: two 32-bit draws ``h, l`` (keys
    ``split(key)``) give :math:`((h \bmod s)(2^{32} \bmod s) + l \bmod s) \bmod s` (the
    product and sum modulo :math:`2^{32}`), so the bias is below :math:`2^{-32}`.

    Example:
        >>> randint(key(0), (4,), 0, 10)
        tensor([9, 0, 2, 3])
    """

    span = int(high) - int(low)
    if not 0 < span < 2**32:
        raise ValueError(f"randint needs low < high with high - low < 2**32, got low={low}, high={high}")
    k1, k2 = split(key).unbind(-2)
    h, lo = bits(k1, shape) % span, bits(k2, shape) % span
    m = (2**32) % span
    mh, ml = m >> 16, m & 0xFFFF
    prod = (h * ml + (((h * mh) & 0xFFFF) << 16)) & _MASK  # (h * m) mod 2**32 without overflow
    return ((prod + lo) & _MASK) % span + int(low)


def permutation(key: Tensor, n: int) -> Tensor:
    r"""A uniformly random permutation of ``range(n)``: the order of ``n`` 64-bit draws.

    Example:
        >>> sorted(permutation(key(3), 5).tolist())
        [0, 1, 2, 3, 4]
    """

    return torch.argsort(bits(key, (n,), 64), dim=-1, stable=True)
