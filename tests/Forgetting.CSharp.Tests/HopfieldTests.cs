using Forgetting.CSharp;

namespace Forgetting.CSharp.Tests;

public class HopfieldTests
{
    [Fact]
    public void APoolingClassifierWithAPfuTrainsOnBitPatternBagsAndReportsItsAccuracy()
    {
        var classifier = new HopfieldBagClassifier(layer: "pooling", unit: "pfu", adapted: false, epochs: 3, bags: 256);
        Assert.Equal("pooling", classifier.Layer);
        Assert.Equal("pfu", classifier.Unit);
        var report = classifier.Train();
        Assert.InRange(report.TestAccuracy, 0.0, 1.0);
        Assert.Equal(3, report.TrainLosses.Count);
        // The PFU forgets the scores up to the lower median: about half the attention mass.
        Assert.InRange(report.ForgottenMass, 0.3, 0.7);
        // The same seed gives the same numbers.
        Assert.Equal(report.TestAccuracy, new HopfieldBagClassifier("pooling", "pfu", false, 3, 256).Train().TestAccuracy);
    }

    [Fact]
    public void UnknownUnitsAndLayersAreRefused()
    {
        var unit = Assert.Throws<ArgumentException>(() => new HopfieldBagClassifier(unit: "gelu"));
        Assert.Contains("none, relu, pfu", unit.Message);
        Assert.Throws<ArgumentException>(() => new HopfieldBagClassifier(layer: "conv"));
        Assert.Throws<ArgumentException>(() => new HopfieldBagClassifier(epochs: 0));
    }
}
