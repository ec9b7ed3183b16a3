using Forgetting.CSharp;

namespace Forgetting.CSharp.Tests;

public class SparsityTests
{
    [Fact]
    public void OneActiveUnitOfFourIsFullySparse()
    {
        Assert.Equal(1.0, Sparsity.TrevesRolls(new[] { 0.0, 2.5, 0.0, 0.0 }), 12);
    }

    [Fact]
    public void EquallyActiveUnitsAreNotSparse()
    {
        Assert.Equal(0.0, Sparsity.TrevesRolls(new List<double> { 0.7, 0.7, 0.7 }));
    }

    [Fact]
    public void ActivationsAreAveragedOverSamplesFirst()
    {
        // Unit means are 1, 1, 0, 0: two of four units active, so S = (1 - 2/4) / (1 - 1/4) = 2/3.
        var activations = new double[,] { { 2.0, 0.0, 0.0, 0.0 }, { 0.0, 2.0, 0.0, 0.0 } };
        Assert.Equal(2.0 / 3.0, Sparsity.OfActivations(activations), 12);
    }

    [Fact]
    public void BadInputThrowsArgumentExceptionThatSaysWhy()
    {
        var tooFew = Assert.Throws<ArgumentException>(() => Sparsity.TrevesRolls(new[] { 1.0 }));
        Assert.Contains("at least 2 units", tooFew.Message);
        Assert.Throws<ArgumentNullException>(() => Sparsity.TrevesRolls(null!));
    }
}
