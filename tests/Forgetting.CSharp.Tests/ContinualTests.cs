using Forgetting.CSharp;

namespace Forgetting.CSharp.Tests;

public class ContinualTests
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
    public void ASplitSequenceInTaskIlGivesTheAccuracyMatrixAndItsMetrics()
    {
        var run = new ContinualExperiment(scenario: "split", setting: "task", method: "none",
            hidden: new[] { 16 }, epochsPerTask: 2, batchSize: 32, learningRate: 0.1);
        var reports = new List<TaskReport>();
        var result = run.Run(new[] { Data }, onTask: reports.Add);

        Assert.Equal(2, result.Tasks.Count);
        Assert.Equal(3, result.Accuracy.Count);
        Assert.All(result.Accuracy, row => Assert.Equal(2, row.Count));
        Assert.Equal(2, reports.Count);
        Assert.True(result.Accuracy[2][1] > 0.9, $"task 2 after learning it: {result.Accuracy[2][1]}");
        var names = result.Metrics.Select(m => m.Name).ToList();
        Assert.Contains("ACC", names);
        Assert.Contains("BWT", names);
        Assert.All(result.Metrics, m => Assert.False(string.IsNullOrWhiteSpace(m.Definition)));
        var bwt = result.Metrics.Single(m => m.Name == "BWT").Value;
        Assert.NotNull(bwt);
        Assert.Equal(result.Accuracy[2][0] - result.Accuracy[1][0], bwt!.Value, 12);
    }

    [Fact]
    public void TheSameRecipeGivesTheSameNumbersAndSurvivesItsJson()
    {
        var run = new ContinualExperiment(scenario: "permuted", setting: "domain", method: "none", tasks: 2,
            hidden: new[] { 8 }, batchSize: 32, seed: 3);
        var first = run.Run(new[] { Data });
        var path = Path.Combine(Directory.CreateTempSubdirectory().FullName, "recipe.json");
        File.WriteAllText(path, first.RecipeJson);
        var again = ContinualExperiment.FromRecipe(path).Run(new[] { Data });
        Assert.Equal(first.Accuracy, again.Accuracy);
        Assert.Equal(first.RecipeJson, again.RecipeJson);
    }

    [Fact]
    public void ABinarizedNetLearnsATwoTaskSequenceWithMetaplasticAdam()
    {
        var run = ContinualExperiment.Binarized(new[] { 1.35 }, scenario: "permuted", setting: "domain", tasks: 2,
            hidden: new[] { 32, 32 }, epochsPerTask: 2, batchSize: 20, learningRate: 0.02);
        var result = run.Run(new[] { Data });

        Assert.Equal(3, result.Accuracy.Count);
        Assert.All(result.Accuracy, row => Assert.Equal(2, row.Count));
        Assert.True(result.Accuracy[1][0] > 0.9, $"task 1 after learning it: {result.Accuracy[1][0]}");
        Assert.True(result.Accuracy[2][1] > 0.9, $"task 2 after learning it: {result.Accuracy[2][1]}");
        Assert.Contains("\"kind\": \"binarized\"", result.RecipeJson);
        Assert.Contains("\"norm_state\": \"task\"", result.RecipeJson);
        Assert.Contains("\"kind\": \"metaplastic\"", result.RecipeJson);
    }

    [Fact]
    public void ABinarizedNetRefusesANegativeMetaplasticity()
    {
        var e = Assert.Throws<ArgumentException>(() => ContinualExperiment.Binarized(new[] { -1.0 }));
        Assert.Contains("--meta must be finite numbers ≥ 0", e.Message);
    }

    [Fact]
    public void JointTrainingHasTwoRows()
    {
        var result = new ContinualExperiment(scenario: "split", setting: "class", method: "joint",
            hidden: new[] { 16 }, epochsPerTask: 2, batchSize: 32, learningRate: 0.1).Run(new[] { Data });
        Assert.Equal(2, result.Accuracy.Count);
        Assert.Null(result.Metrics.Single(m => m.Name == "BWT").Value);
    }

    [Fact]
    public void BadInputSaysWhatWasWrongBeforeAnyWork()
    {
        Assert.Contains("unknown method 'replay'",
            Assert.ThrowsAny<ArgumentException>(() => new ContinualExperiment(method: "replay")).Message);
        Assert.Contains("unknown scenario 'shuffled'",
            Assert.ThrowsAny<ArgumentException>(() => new ContinualExperiment(scenario: "shuffled", method: "none")).Message);
        Assert.Contains("--epochs must be at least 1",
            Assert.ThrowsAny<ArgumentException>(() => new ContinualExperiment(method: "none", epochsPerTask: 0)).Message);
        Assert.Contains("no setting 'strength'",
            Assert.ThrowsAny<ArgumentException>(() => new ContinualExperiment(method: "none", terms: new[] { "l2:strength=1" })).Message);
        var run = new ContinualExperiment(scenario: "split", method: "none");
        Assert.Contains("1 data set(s), 2 were given",
            Assert.ThrowsAny<ArgumentException>(() => run.Run(new[] { Data, Data })).Message);
    }

    [Fact]
    public void TheTermKindsAreListedWithTheirSettings()
    {
        var ers = Terms.Kinds.Single(k => k.Name == "ers");
        Assert.Equal("weight", ers.Settings.Single().Name);
        Assert.Equal("0.1", ers.Settings.Single().Default);
    }
}
