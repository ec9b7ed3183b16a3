using Forgetting.Tensors;
using Microsoft.FSharp.Core;
using Core = Forgetting.Tensors.TensorModule;

namespace Forgetting.CSharp;

/// <summary>Creating tensors. Tensors are immutable; float32 unless a method says otherwise.</summary>
public static class Tensors
{
    /// <summary>A float32 tensor holding a copy of <paramref name="data"/> (row-major).</summary>
    /// <exception cref="ArgumentException">The values do not fill the shape.</exception>
    public static Tensor FromArray(float[] data, params int[] shape) => Core.ofArray(shape, data);

    /// <summary>A float64 tensor holding a copy of <paramref name="data"/> (row-major): for gradient checks.</summary>
    /// <exception cref="ArgumentException">The values do not fill the shape.</exception>
    public static Tensor FromArray(double[] data, params int[] shape) => Core.ofFloat64(shape, data);

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(params int[] shape) => Core.zeros(DType.Float32, shape);

    /// <summary>A tensor filled with one value.</summary>
    public static Tensor Full(int[] shape, double value, bool float64 = false) =>
        Core.full(float64 ? DType.Float64 : DType.Float32, shape, value);

    /// <summary>Standard normal values drawn from an explicit seed: the same seed gives the same values everywhere.</summary>
    public static Tensor Normal(int[] shape, long seed, double mean = 0.0, double std = 1.0) =>
        Core.normal(RngModule.create(seed), DType.Float32, shape, mean, std);

    /// <summary>Uniform values in [lo, hi) drawn from an explicit seed.</summary>
    public static Tensor Uniform(int[] shape, long seed, double lo = 0.0, double hi = 1.0) =>
        Core.uniform(RngModule.create(seed), DType.Float32, shape, lo, hi);
}

/// <summary>Differentiable operations on tensors, as extension methods.</summary>
public static class TensorExtensions
{
    /// <summary>Elementwise e^x.</summary>
    public static Tensor Exp(this Tensor x) => Core.exp(x);

    /// <summary>Elementwise natural logarithm.</summary>
    public static Tensor Log(this Tensor x) => Core.log(x);

    /// <summary>Elementwise hyperbolic tangent.</summary>
    public static Tensor Tanh(this Tensor x) => Core.tanh(x);

    /// <summary>Elementwise logistic sigmoid.</summary>
    public static Tensor Sigmoid(this Tensor x) => Core.sigmoid(x);

    /// <summary>Elementwise max(x, 0).</summary>
    public static Tensor Relu(this Tensor x) => Core.relu(x);

    /// <summary>Elementwise x².</summary>
    public static Tensor Square(this Tensor x) => Core.square(x);

    /// <summary>The sum of all elements (a scalar tensor).</summary>
    public static Tensor Sum(this Tensor x) => Core.sum(x);

    /// <summary>The sum along one axis (negative counts from the end).</summary>
    public static Tensor Sum(this Tensor x, int axis, bool keepDim = false) => Core.sumAxis(axis, keepDim, x);

    /// <summary>The mean of all elements (a scalar tensor).</summary>
    public static Tensor Mean(this Tensor x) => Core.mean(x);

    /// <summary>Matrix product: [m,k]×[k,n], [b,m,k]×[b,k,n] or [b,m,k]×[k,n].</summary>
    public static Tensor MatMul(this Tensor a, Tensor b) => Core.matmul(a, b);

    /// <summary>A view with another shape of the same number of elements (one dimension may be -1).</summary>
    public static Tensor Reshape(this Tensor x, params int[] shape) => Core.reshape(shape, x);

    /// <summary>Swap the last two axes.</summary>
    public static Tensor Transpose(this Tensor x) => Core.transpose(x);

    /// <summary>Softmax along an axis (numerically stable).</summary>
    public static Tensor Softmax(this Tensor x, int axis = -1) => Core.softmax(axis, x);

    /// <summary>Mean cross-entropy of logits [batch, classes] against integer labels (fused, stable).</summary>
    public static Tensor CrossEntropy(this Tensor logits, IReadOnlyList<int> labels) =>
        Functional.crossEntropy(logits, labels.ToArray());
}

/// <summary>The value of a scalar function and its gradient.</summary>
/// <param name="Value">The function's value.</param>
/// <param name="Gradient">The gradient, shaped like the input.</param>
public sealed record ValueAndGradient(double Value, Tensor Gradient);

/// <summary>Reverse-mode automatic differentiation of scalar functions.</summary>
public static class Autodiff
{
    /// <summary>The gradient of a scalar-valued function at <paramref name="x"/>.</summary>
    /// <exception cref="ArgumentException">The function does not return a one-element tensor.</exception>
    public static Tensor Grad(Func<Tensor, Tensor> f, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(f);
        return Core.grad(FuncConvert.FromFunc(f), x);
    }

    /// <summary>The value of a scalar-valued function at <paramref name="x"/> and its gradient there.</summary>
    /// <exception cref="ArgumentException">The function does not return a one-element tensor.</exception>
    public static ValueAndGradient ValueAndGrad(Func<Tensor, Tensor> f, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(f);
        var result = Core.valueAndGrad(FuncConvert.FromFunc(f), x);
        return new ValueAndGradient(result.Item1.Item, result.Item2);
    }

    /// <summary>The gradients of a scalar-valued function of several tensors, one per input.</summary>
    /// <exception cref="ArgumentException">The function does not return a one-element tensor.</exception>
    public static IReadOnlyList<Tensor> Grads(Func<IReadOnlyList<Tensor>, Tensor> f, params Tensor[] xs)
    {
        ArgumentNullException.ThrowIfNull(f);
        return Core.grads(FuncConvert.FromFunc<Tensor[], Tensor>(ts => f(ts)), xs);
    }
}
