"""Keras 3 layers and initializers for the IR semantics Keras has no exact built-in for.

Generated Keras files are self-contained: the emitter copies the definitions a model needs
from this file, verbatim, through `archspec_keras.helpers.helper_sources`. So every
top-level definition here needs nothing but `import keras`, `import math` and the other
definitions of this file; classes are registered under the package "archspec" and have
`get_config()`, so `.keras` files load wherever the class is defined (this module or a
generated file). Inputs are channels-last (N, H, W, C). Window geometry is computed in
Python from static shapes (XLA-friendly); where it depends on the input size (ceil_mode,
the average divisor, adaptive bins) the layer needs a fixed height and width.

What Keras's built-ins already cover (and so has no helper here) is in docs/keras.md.
"""

import math

import keras


def pair(value):
    """(v, v) for an int, else the two values as a tuple."""
    return (value, value) if isinstance(value, int) else tuple(value)


def pool_output_size(size, kernel, stride, before, after, ceil_mode):
    """PyTorch's pooled length; in ceil mode the last window must start inside the input
    or the leading padding."""
    span = size + before + after - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + before:
        out -= 1
    return out


def pool_padding(shape, pool_size, strides, padding, ceil_mode):
    """Sides to pad so that a valid pool yields PyTorch's output: ceil mode pads the
    bottom/right just enough for the last window (static sizes needed there)."""
    sides = []
    for size, kernel, stride, (before, after) in zip(
        shape, pool_size, strides, padding, strict=True
    ):
        if ceil_mode:
            if size is None:
                raise ValueError("ceil_mode pooling needs a fixed input height and width")
            out = pool_output_size(size, kernel, stride, before, after, True)
            after = max((out - 1) * stride + kernel - size - before, 0)
        sides.append((before, after))
    return tuple(sides)


def same_padding(shape, pool_size, strides):
    """TensorFlow's "same" sides for this input size: the odd pixel at the bottom/right."""
    sides = []
    for size, kernel, stride in zip(shape, pool_size, strides, strict=True):
        if size is None:
            raise ValueError("'same' here needs a fixed input height and width")
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        sides.append((total // 2, total - total // 2))
    return tuple(sides)


def pool_divisors(size, out, kernel, stride, padding, count_include_pad):
    """PyTorch's average-pool divisor along one axis, per output index: the window clipped
    to input + padding, or to the input alone without count_include_pad."""
    before, after = padding
    divisors = []
    for i in range(out):
        start = i * stride - before
        end = min(start + kernel, size + after)
        if not count_include_pad:
            start, end = max(start, 0), min(end, size)
        divisors.append(end - start)
    return divisors


@keras.saving.register_keras_serializable(package="archspec")
class PaddedPooling2D(keras.layers.Layer):
    """What the padded pools share: pool_size, strides, padding ((top, bottom),
    (left, right)) or "same" (TensorFlow's sides for the input size), ceil_mode."""

    def __init__(self, pool_size, strides, padding, ceil_mode=False, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pair(pool_size)
        self.strides = pair(strides)
        self.padding = padding if padding == "same" else tuple(pair(p) for p in padding)
        self.ceil_mode = ceil_mode

    def sides(self, shape):
        """(the declared sides, the sides to pad before a valid pool) for this input."""
        padding = self.padding
        if padding == "same":
            padding = same_padding(shape, self.pool_size, self.strides)
        return padding, pool_padding(shape, self.pool_size, self.strides, padding, self.ceil_mode)

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "ceil_mode": self.ceil_mode,
        }


@keras.saving.register_keras_serializable(package="archspec")
class PaddedMaxPooling2D(PaddedPooling2D):
    """Max pooling whose padding is -inf, so padded positions never win (ZeroPadding2D +
    MaxPooling2D is wrong on negative inputs), with PyTorch's ceil_mode."""

    def call(self, x):
        _, sides = self.sides(x.shape[1:3])
        x = keras.ops.pad(x, ((0, 0), *sides, (0, 0)), constant_values=-math.inf)
        return keras.ops.max_pool(x, self.pool_size, self.strides, padding="valid")


@keras.saving.register_keras_serializable(package="archspec")
class PaddedAveragePooling2D(PaddedPooling2D):
    """Average pooling over zero padding with PyTorch's divisor: the window clipped to
    input + padding (count_include_pad=True) or to the input (False), and its ceil_mode.
    padding="same" with count_include_pad=False is TensorFlow's "same" average, also on
    Keras's torch backend (whose AveragePooling2D "same" pads asymmetric sides with
    replicated edge pixels and averages them in)."""

    def __init__(
        self, pool_size, strides, padding, ceil_mode=False, count_include_pad=True, **kwargs
    ):
        super().__init__(pool_size, strides, padding, ceil_mode, **kwargs)
        self.count_include_pad = count_include_pad

    def call(self, x):
        shape = x.shape[1:3]
        padding, sides = self.sides(shape)
        y = keras.ops.pad(x, ((0, 0), *sides, (0, 0)))
        y = keras.ops.average_pool(y, self.pool_size, self.strides, padding="valid")
        if self.count_include_pad and not self.ceil_mode:
            return y  # every window lies inside input + padding: the full window divides
        if None in shape:
            raise ValueError("this average pooling needs a fixed input height and width")
        rows, cols = (
            pool_divisors(
                shape[axis],
                y.shape[axis + 1],
                self.pool_size[axis],
                self.strides[axis],
                padding[axis],
                self.count_include_pad,
            )
            for axis in (0, 1)
        )
        window = self.pool_size[0] * self.pool_size[1]
        scale = [[window / (h * w) for w in cols] for h in rows]
        scale = keras.ops.convert_to_tensor(scale, dtype=y.dtype)
        return y * keras.ops.reshape(scale, (1, len(rows), len(cols), 1))

    def get_config(self):
        return {**super().get_config(), "count_include_pad": self.count_include_pad}


@keras.saving.register_keras_serializable(package="archspec")
class TorchAdaptiveAveragePooling2D(keras.layers.Layer):
    """PyTorch's AdaptiveAvgPool2d: output bin i averages input rows
    [floor(i * H / h), ceil((i + 1) * H / h)) (bins may overlap), the same for columns.
    keras.layers.AdaptiveAveragePooling2D returns NaN under JAX for some sizes (224 -> 7)."""

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = pair(output_size)

    def call(self, x):
        for axis, out in ((1, self.output_size[0]), (2, self.output_size[1])):
            size = x.shape[axis]
            if size is None:
                raise ValueError("adaptive pooling needs a fixed input height and width")
            bins = []
            for i in range(out):
                start, end = i * size // out, -(-(i + 1) * size // out)
                part = x[:, start:end] if axis == 1 else x[:, :, start:end]
                bins.append(keras.ops.mean(part, axis=axis, keepdims=True))
            x = keras.ops.concatenate(bins, axis=axis)
        return x

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


@keras.saving.register_keras_serializable(package="archspec")
class ConstantPadding2D(keras.layers.Layer):
    """ZeroPadding2D with any fill value: padding ((top, bottom), (left, right))."""

    def __init__(self, padding, value, **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple(pair(p) for p in padding)
        self.value = value

    def call(self, x):
        return keras.ops.pad(x, ((0, 0), *self.padding, (0, 0)), constant_values=self.value)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@keras.saving.register_keras_serializable(package="archspec")
class StridedDilatedConv2D(keras.layers.Conv2D):
    """Conv2D with strides > 1 AND dilation_rate > 1, which Conv2D refuses: the stride-1
    dilated convolution, then every stride-th output (same kernel and values, stride^2
    times the work). Padding "valid" only: pad explicitly before it."""

    def __init__(self, filters, kernel_size, strides, dilation_rate, **kwargs):
        if kwargs.get("padding", "valid") != "valid":
            raise ValueError("StridedDilatedConv2D supports padding='valid' only")
        super().__init__(filters, kernel_size, dilation_rate=dilation_rate, **kwargs)
        self.subsample = pair(strides)

    def call(self, x):
        return super().call(x)[:, :: self.subsample[0], :: self.subsample[1]]

    def compute_output_shape(self, input_shape):
        n, h, w, c = super().compute_output_shape(input_shape)
        sh, sw = self.subsample
        return (n, None if h is None else -(-h // sh), None if w is None else -(-w // sw), c)

    def get_config(self):
        return {**super().get_config(), "strides": self.subsample}


@keras.saving.register_keras_serializable(package="archspec")
class TorchBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization whose training step updates the moving variance as PyTorch does.

    PyTorch's running_var takes the unbiased batch variance (x n / (n - 1), n values per
    channel), Keras's the biased one. Both normalize with the biased variance, and so does
    this layer; inference, weights and config are exactly BatchNormalization's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.renorm:
            raise ValueError("TorchBatchNormalization does not support renorm")

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        x = keras.ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, mask)
        if mask is None:
            count = keras.ops.cast(keras.ops.size(x) // x.shape[self.axis], x.dtype)
        else:
            count = keras.ops.sum(keras.ops.cast(mask, x.dtype))
        unbiased = variance * (count / keras.ops.maximum(count - 1, 1))  # n = 1: PyTorch raises
        keep = self.momentum
        moving_mean = keras.ops.cast(self.moving_mean, x.dtype)
        moving_variance = keras.ops.cast(self.moving_variance, x.dtype)
        self.moving_mean.assign(moving_mean * keep + mean * (1.0 - keep))
        self.moving_variance.assign(moving_variance * keep + unbiased * (1.0 - keep))
        outputs = keras.ops.batch_normalization(
            x,
            mean,
            variance,
            axis=self.axis,
            offset=keras.ops.cast(self.beta, x.dtype) if self.center else None,
            scale=keras.ops.cast(self.gamma, x.dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        return keras.ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="archspec")
class GELU(keras.layers.Layer):
    """GELU with the form explicit: exact (erf) or the tanh approximation. Keras 3 has no
    GELU layer, and keras.ops.gelu defaults to the approximation."""

    def __init__(self, approximate=False, **kwargs):
        super().__init__(**kwargs)
        self.approximate = approximate

    def call(self, x):
        return keras.ops.gelu(x, approximate=self.approximate)

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


@keras.saving.register_keras_serializable(package="archspec")
class FanInUniform(keras.initializers.RandomUniform):
    """Uniform in +-1/sqrt(fan_in): PyTorch's default bias init (and its default weight
    init, kaiming_uniform(a=sqrt(5)), where Keras's fan_in differs from PyTorch's)."""

    def __init__(self, fan_in, seed=None):
        bound = 1 / math.sqrt(fan_in)
        super().__init__(-bound, bound, seed=seed)
        self.fan_in = fan_in

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": super().get_config()["seed"]}


@keras.saving.register_keras_serializable(package="archspec")
class Clip(keras.layers.Layer):
    """min(max(x, min_value), max_value) for a lower bound other than 0 (ReLU's max_value
    covers clips at 0, relu6 among them)."""

    def __init__(self, min_value, max_value, **kwargs):
        super().__init__(**kwargs)
        self.min_value = min_value
        self.max_value = max_value

    def call(self, x):
        return keras.ops.clip(x, self.min_value, self.max_value)

    def get_config(self):
        return {**super().get_config(), "min_value": self.min_value, "max_value": self.max_value}


@keras.saving.register_keras_serializable(package="archspec")
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNetV2's channel_shuffle on channels-last input: channels viewed as (groups,
    C / groups), transposed, flattened (output channel j * groups + i is input channel
    i * (C / groups) + j, as in torch's NCHW)."""

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups

    def call(self, x):
        _, h, w, c = x.shape
        x = keras.ops.reshape(x, (-1, h, w, self.groups, c // self.groups))
        x = keras.ops.transpose(x, (0, 1, 2, 4, 3))
        return keras.ops.reshape(x, (-1, h, w, c))

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="archspec")
class Scale(keras.layers.Layer):
    """A learnable factor per channel (ConvNeXt's layer scale): x * scale, `scale` of shape
    (C,) on the last axis, initialized to `init_value`."""

    def __init__(self, init_value=1.0, **kwargs):
        super().__init__(**kwargs)
        self.init_value = init_value

    def build(self, input_shape):
        init = keras.initializers.Constant(self.init_value)
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer=init)

    def call(self, x):
        return x * self.scale

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


@keras.saving.register_keras_serializable(package="archspec")
class ChannelChunk(keras.layers.Layer):
    """Part `index` of `chunks` equal parts of the channels (the last axis), as torch's
    `x.chunk(chunks, dim=1)[index]` in NCHW."""

    def __init__(self, chunks, index, **kwargs):
        super().__init__(**kwargs)
        self.chunks = chunks
        self.index = index

    def call(self, x):
        size = x.shape[-1] // self.chunks
        return x[..., self.index * size : (self.index + 1) * size]

    def get_config(self):
        return {**super().get_config(), "chunks": self.chunks, "index": self.index}


@keras.saving.register_keras_serializable(package="archspec")
class ChannelSplit(keras.layers.Layer):
    """The channels (the last axis) cut into consecutive parts at once, a list: torch's
    `x.chunk(chunks, dim=1)` (equal parts) or `x.split(sizes, dim=1)` in NCHW."""

    def __init__(self, chunks=0, sizes=(), **kwargs):
        super().__init__(**kwargs)
        self.chunks = chunks
        self.sizes = list(sizes)

    def call(self, x):
        if not self.sizes:
            return keras.ops.split(x, self.chunks, axis=-1)
        starts = [sum(self.sizes[: i + 1]) for i in range(len(self.sizes) - 1)]
        return keras.ops.split(x, starts, axis=-1)

    def get_config(self):
        return {**super().get_config(), "chunks": self.chunks, "sizes": self.sizes}
