using Forgetting.Data;
using Forgetting.Experiments;
using Forgetting.Nn;
using Forgetting.Training;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;
using CoreDataset = Forgetting.Data.Dataset;

namespace Forgetting.CSharp;

/// <summary>Labelled images in memory, as loaded from the data cache or built from arrays.</summary>
public sealed class DataSet
{
    internal DataSet(CoreDataset data) => Data = data;

    internal CoreDataset Data { get; }

    /// <summary>The data set's name.</summary>
    public string Name => Data.Name;

    /// <summary>How many samples it holds.</summary>
    public int Count => Data.Labels.Length;

    /// <summary>How many classes its labels range over.</summary>
    public int Classes => Data.Classes;

    /// <summary>A data set from arrays: <paramref name="images"/> holds one row of <paramref name="features"/> values per label.</summary>
    /// <exception cref="ArgumentException">The arrays do not fit together, or a label is out of range.</exception>
    public static DataSet FromArrays(string name, float[] images, int[] labels, int features, int classes) =>
        new(DatasetModule.create(name, new[] { features }, classes, images, labels));

    /// <summary>
    /// The training and test parts of "mnist" or "fashion-mnist" from the data cache, verified against their checksums.
    /// Fill the cache first with <c>forgetting data fetch fashion-mnist</c>.
    /// </summary>
    /// <param name="name">"mnist" or "fashion-mnist".</param>
    /// <param name="cacheDirectory">The cache; by default $FORGETTING_DATA, else ~/.cache/forgetting.</param>
    /// <exception cref="ArgumentException">An unknown data set name.</exception>
    /// <exception cref="DataError">The data set is not in the cache, or a file is corrupt.</exception>
    public static TrainTestSplit Load(string name, string? cacheDirectory = null)
    {
        var known = KnownDatasetModule.tryParse(name);
        if (known is null)
            throw new ArgumentException($"unknown data set '{name}'; use mnist or fashion-mnist", nameof(name));
        var cache = Cache.directory(cacheDirectory is null ? FSharpOption<string>.None : FSharpOption<string>.Some(cacheDirectory));
        var data = Cache.load(cache, known.Value);
        return new TrainTestSplit(new DataSet(data.Train), new DataSet(data.Test));
    }
}

/// <summary>A data set's training and test parts.</summary>
/// <param name="Train">The training part.</param>
/// <param name="Test">The test part.</param>
public sealed record TrainTestSplit(DataSet Train, DataSet Test);

/// <summary>What one epoch of training gave.</summary>
/// <param name="Epoch">The epoch, from 1.</param>
/// <param name="TrainLoss">Mean training loss over the epoch (task loss plus the variant's terms).</param>
/// <param name="TestLoss">Mean loss on the test set.</param>
/// <param name="TestAccuracy">Accuracy on the test set, in [0, 1].</param>
public sealed record EpochReport(int Epoch, double TrainLoss, double TestLoss, double TestAccuracy);

/// <summary>Read-outs of one hidden layer over the test set.</summary>
/// <param name="Layer">The hidden layer, from 1.</param>
/// <param name="Sparsity">Treves-Rolls sparsity of the layer's output, in [0, 1].</param>
/// <param name="MeanActivations">Mean activation per unit.</param>
/// <param name="Importance">Neuron importance (mean gate) per unit; null when the layer has no forgetting layer.</param>
public sealed record LayerReport(int Layer, double Sparsity, IReadOnlyList<double> MeanActivations, IReadOnlyList<double>? Importance);

/// <summary>A trained classifier's results.</summary>
/// <param name="TestAccuracy">Accuracy on the test set after training, in [0, 1].</param>
/// <param name="Epochs">Per-epoch metrics.</param>
/// <param name="Layers">Per-hidden-layer read-outs.</param>
public sealed record TrainingResult(double TestAccuracy, IReadOnlyList<EpochReport> Epochs, IReadOnlyList<LayerReport> Layers);

/// <summary>
/// A multilayer perceptron classifier, with a forgetting layer after each hidden ReLU or one of the baselines.
/// Variants: sgd, l1, l2, decov, inhibition, i_short_cut, lateral_inhibition (the full model), forgetting_layer_star.
/// </summary>
public sealed class MlpClassifier
{
    private readonly Variant _variant;
    private readonly FSharpList<int> _hidden;

    /// <summary>Describe the classifier; nothing is trained until <see cref="Train"/>.</summary>
    /// <param name="hidden">Hidden layer sizes, e.g. 256, 256, 128.</param>
    /// <param name="variant">The variant's name.</param>
    /// <param name="rho">The forgetting layer's steepness ρ.</param>
    /// <param name="terms">Settings of the variant's terms, or terms to add, as "kind:setting=value,…",
    /// e.g. "ers:weight=0.2" (λ) or "irs:weight=0" (β); see <see cref="Terms.Kinds"/>.</param>
    /// <exception cref="ArgumentException">An unknown variant, term or setting, or a bad size.</exception>
    public MlpClassifier(IReadOnlyList<int> hidden, string variant = "lateral_inhibition", double rho = 1.0, IEnumerable<string>? terms = null)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        if (hidden.Count == 0 || hidden.Any(h => h < 1))
            throw new ArgumentException("hidden sizes must be positive, and at least one is needed", nameof(hidden));
        var overrides = (terms ?? Enumerable.Empty<string>()).Select(t => TermKindModule.parseOverride(Catalog.terms, t));
        _variant = VariantModule.ofName(rho, ListModule.OfSeq(overrides), variant);
        _hidden = ListModule.OfSeq(hidden);
    }

    /// <summary>Train from an explicit seed (the same seed gives the same result), then read the net out on the test set.</summary>
    /// <param name="train">Training examples.</param>
    /// <param name="test">Test examples.</param>
    /// <param name="epochs">Passes over the training set.</param>
    /// <param name="batchSize">Examples per step.</param>
    /// <param name="seed">The seed of initialisation and shuffling.</param>
    /// <param name="learningRate">SGD learning rate.</param>
    /// <param name="momentum">SGD momentum.</param>
    /// <param name="onEpoch">Called after every epoch, e.g. to show progress.</param>
    public TrainingResult Train(DataSet train, DataSet test, int epochs = 10, int batchSize = 128, long seed = 1,
        double learningRate = 0.01, double momentum = 0.9, Action<EpochReport>? onEpoch = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        // A single-task recipe (Recipe.single) with this variant, net and schedule; its data are the sets given.
        var single = RecipeModule.single;
        var withVariant = RecipeModule.withVariant(_variant, single);
        var recipe = new Recipe(
            withVariant.Label, withVariant.Scenario,
            RecipeModule.mlp(_hidden, withVariant.Model.Forgetting),
            withVariant.Training, withVariant.Terms,
            new OptimizerSpec("sgd", learningRate, momentum, false, 0.0, single.Optimizer.Beta1, single.Optimizer.Beta2,
                single.Optimizer.Eps, false, ListModule.Empty<double>()),
            epochs, batchSize, seed, withVariant.Study);
        var progress = FuncConvert.FromAction<Progress>(p =>
        {
            if (onEpoch is not null && p is Progress.EpochDone done)
                onEpoch(Report(done.Item));
        });
        var result = Classification.run(recipe, progress, ExamplesModule.ofDataset(train.Data), ExamplesModule.ofDataset(test.Data));
        return new TrainingResult(
            result.Test.Accuracy,
            result.History.Select(Report).ToList(),
            result.Layers.Select(l => new LayerReport(l.Layer, l.Sparsity, l.MeanActivation,
                OptionModule.IsSome(l.Importance) ? l.Importance.Value : null)).ToList());
    }

    private static EpochReport Report(EpochMetrics m) => new(m.Epoch, m.TrainLoss, m.TestLoss, m.TestAccuracy);
}
