using Forgetting.CSharp;
using Forgetting.Tensors;

namespace Forgetting.CSharp.Tests;

public class AutodiffTests
{
    [Fact]
    public void GradientOfSumOfSquaresIsTwiceTheInput()
    {
        var x = Tensors.FromArray(new[] { 1.0, -2.0, 3.0 }, 3);
        var g = Autodiff.Grad(t => t.Square().Sum(), x);
        Assert.Equal(new[] { 2.0, -4.0, 6.0 }, g.ToFloat64Array());
    }

    [Fact]
    public void ValueAndGradientOfALogisticLossMatchTheClosedForm()
    {
        // f(w) = log(1 + e^-w·x) summed; f'(w) = -x·sigmoid(-w·x).
        var x = Tensors.FromArray(new[] { 0.5, 2.0 }, 2);
        var w = Tensors.FromArray(new[] { 1.0, -1.0 }, 2);
        var result = Autodiff.ValueAndGrad(v => (1.0 + (-(v * x)).Exp()).Log().Sum(), w);
        var expectedValue = Math.Log(1 + Math.Exp(-0.5)) + Math.Log(1 + Math.Exp(2.0));
        Assert.Equal(expectedValue, result.Value, 12);
        var expected = new[] { -0.5 / (1 + Math.Exp(0.5)), -2.0 / (1 + Math.Exp(-2.0)) };
        var actual = result.Gradient.ToFloat64Array();
        Assert.Equal(expected[0], actual[0], 12);
        Assert.Equal(expected[1], actual[1], 12);
    }

    [Fact]
    public void GradientsOfADenseLayerLoss()
    {
        var x = Tensors.Normal(new[] { 4, 3 }, seed: 1);
        var w = Tensors.Normal(new[] { 3, 2 }, seed: 2);
        var grads = Autodiff.Grads(p => p[0].MatMul(p[1]).CrossEntropy(new[] { 0, 1, 1, 0 }), x, w);
        Assert.Equal(2, grads.Count);
        Assert.Equal(new[] { 4, 3 }, grads[0].Shape);
        Assert.Equal(new[] { 3, 2 }, grads[1].Shape);
    }

    [Fact]
    public void ANonScalarFunctionIsRefusedWithAMessage()
    {
        var x = Tensors.Zeros(2, 2);
        var e = Assert.ThrowsAny<ArgumentException>(() => Autodiff.Grad(t => t.Exp(), x));
        Assert.Contains("must return a scalar", e.Message);
    }

    [Fact]
    public void TheSameSeedGivesTheSameTensor()
    {
        Assert.Equal(Tensors.Uniform(new[] { 5 }, 9).ToArray(), Tensors.Uniform(new[] { 5 }, 9).ToArray());
        Assert.NotEqual(Tensors.Uniform(new[] { 5 }, 9).ToArray(), Tensors.Uniform(new[] { 5 }, 10).ToArray());
    }
}
