using Forgetting.CSharp;

namespace Forgetting.CSharp.Tests;

/// <summary>Memory aware synapses from C#: importance from inputs alone, and MAS as a continual method.</summary>
public class MasTests
{
    /// <summary>Four classes of 8×8 images, each a bright quadrant, with noise.</summary>
    private static DataSet Quadrants(int count, int seed)
    {
        var random = new Random(seed);
        var images = new float[count * 64];
        var labels = new int[count];
        for (var i = 0; i < count; i++)
        {
            labels[i] = i % 4;
            for (var r = 0; r < 8; r++)
                for (var c = 0; c < 8; c++)
                {
                    var quadrant = (r < 4 ? 0 : 2) + (c < 4 ? 0 : 1);
                    images[i * 64 + r * 8 + c] = (quadrant == labels[i] ? 0.8f : 0.1f) + 0.2f * random.NextSingle();
                }
        }
        return DataSet.FromArrays("quadrants", images, labels, features: 64, classes: 4);
    }

    private static readonly TrainTestSplit Data = new(Quadrants(200, 1), Quadrants(80, 2));

    [Fact]
    public void MasImportanceComesFromInputsAloneGlobalAndLocal()
    {
        var model = TrainedModel.Mlp(features: 3, hidden: new[] { 4 }, outputs: 2, seed: 7);
        var inputs = new float[] { 0.5f, -1f, 2f, 1f, 0.25f, -0.5f };
        var global = model.MasImportance(inputs);
        var local = model.MasImportance(inputs, local: true);
        Assert.Equal(model.ParameterNames, global.Select(p => p.Name).ToList());
        Assert.Equal(new[] { 3, 4 }, global.Single(p => p.Name == "fc1/weight").Shape);
        Assert.All(global.Concat(local), p => Assert.All(p.Values, v => Assert.True(v >= 0.0)));
        Assert.Contains(global, p => p.Values.Any(v => v > 0.0));

        // On the output layer, |∂F_i²/∂W_ji| = 2|F_i||a_j|: global MAS is twice the Hebbian one, exactly.
        var g = global.Single(p => p.Name == "out/weight").Values;
        var l = local.Single(p => p.Name == "out/weight").Values;
        for (var i = 0; i < g.Count; i++)
            Assert.Equal(2.0 * l[i], g[i], 5);

        // The mean over outputs is the sum over outputs divided by K = 2.
        var mean = model.MasImportance(inputs, meanOverOutputs: true);
        for (var k = 0; k < global.Count; k++)
            for (var i = 0; i < global[k].Values.Count; i++)
                Assert.Equal(global[k].Values[i] / 2.0, mean[k].Values[i], 6);

        // Batches of one are the per-sample form.
        var batched = model.MasImportance(inputs, batchSize: 1);
        for (var k = 0; k < global.Count; k++)
            for (var i = 0; i < global[k].Values.Count; i++)
                Assert.Equal(global[k].Values[i], batched[k].Values[i], 6);
    }

    [Fact]
    public void BadInputIsRefusedWithAMessage()
    {
        var model = TrainedModel.Mlp(features: 3, hidden: new[] { 4 }, outputs: 2);
        Assert.Contains("at least one input", Assert.Throws<ArgumentException>(() => model.MasImportance(Array.Empty<float>())).Message);
        Assert.Contains("at least one input", Assert.Throws<ArgumentException>(() => model.MasImportance(new float[4])).Message);
        Assert.Contains("unknown norm", Assert.Throws<ArgumentException>(() => model.MasImportance(new float[3], norm: "l3")).Message);
        Assert.Contains("batch size", Assert.Throws<ArgumentException>(() => model.MasImportance(new float[3], batchSize: 0)).Message);
        Assert.Contains("lambda must be ≥ 0", Assert.Throws<ArgumentException>(() =>
            new ContinualExperiment(method: "mas", methodSettings: new Dictionary<string, double> { ["mas_lambda"] = -1 })).Message);
    }

    [Fact]
    public void AMasSequenceRunsAndItsModelGivesImportance()
    {
        foreach (var method in new[] { "mas", "mas-local" })
        {
            var run = new ContinualExperiment(scenario: "split", setting: "task", method: method,
                hidden: new[] { 16 }, epochsPerTask: 2, batchSize: 32, learningRate: 0.1,
                methodSettings: new Dictionary<string, double> { ["mas_lambda"] = 1.0 });
            Assert.Contains("\"mas\"", run.RecipeJson);
            var result = run.Run(new[] { Data });
            Assert.Equal(3, result.Accuracy.Count);
            Assert.True(result.Accuracy[2][1] > 0.9, $"{method}: task 2 after learning it: {result.Accuracy[2][1]}");
            var omega = result.Model.MasImportance(Data.Train, task: 1);
            Assert.Contains(omega, p => p.Name == "out/head2/weight" && p.Values.Any(v => v > 0.0));
            Assert.All(omega.Single(p => p.Name == "out/head1/weight").Values, v => Assert.Equal(0.0, v));
        }
    }
}
