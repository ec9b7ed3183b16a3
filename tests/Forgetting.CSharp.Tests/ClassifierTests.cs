using Forgetting.CSharp;

namespace Forgetting.CSharp.Tests;

public class ClassifierTests
{
    /// <summary>Two classes told apart by which half of 8 features is lit, with noise.</summary>
    private static DataSet Halves(int count, int seed)
    {
        var random = new Random(seed);
        var images = new float[count * 8];
        var labels = new int[count];
        for (var i = 0; i < count; i++)
        {
            labels[i] = i % 2;
            for (var f = 0; f < 8; f++)
                images[i * 8 + f] = (f < 4) == (labels[i] == 0) ? 0.8f + 0.2f * random.NextSingle() : 0.2f * random.NextSingle();
        }
        return DataSet.FromArrays("halves", images, labels, features: 8, classes: 2);
    }

    [Fact]
    public void ANetWithForgettingLayersLearnsAndReportsImportanceAndSparsity()
    {
        var net = new MlpClassifier(new[] { 16, 8 }, variant: "lateral_inhibition");
        var epochs = new List<EpochReport>();
        var result = net.Train(Halves(256, 1), Halves(64, 2), epochs: 5, batchSize: 32, learningRate: 0.05, onEpoch: epochs.Add);

        Assert.True(result.TestAccuracy > 0.9, $"test accuracy {result.TestAccuracy}");
        Assert.Equal(5, epochs.Count);
        Assert.Equal(2, result.Layers.Count);
        foreach (var layer in result.Layers)
        {
            Assert.InRange(layer.Sparsity, 0.0, 1.0);
            Assert.NotNull(layer.Importance);
            Assert.All(layer.Importance!, omega => Assert.InRange(omega, 0.0, 1.0));
        }
        Assert.Equal(16, result.Layers[0].MeanActivations.Count);
    }

    [Fact]
    public void APlainNetHasNoImportanceAndTheSameSeedGivesTheSameResult()
    {
        var net = new MlpClassifier(new[] { 8 }, variant: "sgd");
        var first = net.Train(Halves(128, 3), Halves(32, 4), epochs: 2, batchSize: 16, seed: 5);
        var again = net.Train(Halves(128, 3), Halves(32, 4), epochs: 2, batchSize: 16, seed: 5);
        Assert.Null(first.Layers[0].Importance);
        Assert.Equal(first.Epochs.Select(e => e.TrainLoss), again.Epochs.Select(e => e.TrainLoss));
    }

    [Fact]
    public void BadInputSaysWhatWasWrong()
    {
        var unknown = Assert.ThrowsAny<ArgumentException>(() => new MlpClassifier(new[] { 8 }, variant: "dropout"));
        Assert.Contains("unknown variant 'dropout'", unknown.Message);
        Assert.ThrowsAny<ArgumentException>(() => DataSet.FromArrays("x", new float[5], new[] { 0, 1 }, features: 3, classes: 2));
        Assert.ThrowsAny<ArgumentException>(() => DataSet.Load("cifar-10"));
        var empty = Directory.CreateTempSubdirectory().FullName;
        var missing = Assert.ThrowsAny<Exception>(() => DataSet.Load("mnist", empty));
        Assert.Contains("forgetting data fetch mnist", missing.Message);
    }
}
