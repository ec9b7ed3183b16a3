using Forgetting.Data;
using Forgetting.Experiments;
using Forgetting.Mechanisms;

namespace Forgetting.CSharp;

/// <summary>What training a Hopfield bag classifier gave.</summary>
/// <param name="TestAccuracy">Accuracy on the test bags after the last epoch.</param>
/// <param name="ForgottenMass">The mean attention mass the unit forgot, 1 − Σ A, on the test bags (0 without a unit).</param>
/// <param name="TrainLosses">The mean training loss of every epoch.</param>
public sealed record HopfieldReport(double TestAccuracy, double ForgottenMass, IReadOnlyList<double> TrainLosses);

/// <summary>
/// A classifier of bit-pattern bags (multiple-instance learning, hflayers' demo) by a modern Hopfield
/// layer, with or without partial forgetting (Ota et al., AISTATS 2023): AdamW, batch 32, gradients
/// clipped to norm 1, binary cross-entropy. Build it, then train it; nothing is trained before.
/// </summary>
public sealed class HopfieldBagClassifier
{
    private readonly BitPatternSettings _settings;

    /// <param name="layer">"pooling" (HopfieldPooling, the default), "hopfield" (the bag associating with itself) or "lookup" (HopfieldLayer).</param>
    /// <param name="unit">The partial-forgetting unit: "none", "relu" or "pfu" (the threshold the lower median of the call's scores plus noise in training).</param>
    /// <param name="adapted">The demo's adapted settings (hidden 8, 8 heads, 4 association steps, β 0.25, dropout 0.5), or hflayers' defaults.</param>
    /// <param name="epochs">Training epochs (250 in the demo).</param>
    /// <param name="bags">Bags generated: three quarters train, the rest test (2048 in the demo).</param>
    /// <param name="seed">Initialisation, batch order, dropout and noise; the data's seed is fixed.</param>
    /// <exception cref="ArgumentException">An unknown layer or unit, or a count below its minimum.</exception>
    public HopfieldBagClassifier(string layer = "pooling", string unit = "pfu", bool adapted = true, int epochs = 250,
        int bags = 2048, long seed = 1)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(unit);
        if (epochs < 1)
            throw new ArgumentException($"epochs must be at least 1, got {epochs}", nameof(epochs));
        if (bags < 8)
            throw new ArgumentException($"need at least 8 bags, got {bags}", nameof(bags));

        var defaults = BitPatternSettings.Default;
        var data = BitPatternBags.defaults;
        _settings = new BitPatternSettings(
            BitPatternLayer.Parse(layer),
            adapted ? BitPatternLayerOptions.Adapted : BitPatternLayerOptions.Defaults, ForgettingUnit.Parse(unit), epochs, defaults.BatchSize,
            defaults.LearningRate, defaults.WeightDecay, defaults.ClipNorm,
            new BitPatternOptions(bags, data.InstancesPerBag, data.Bits, data.SignalCount, data.SignalsPerBag,
                data.PositiveFraction, bags * 3 / 4, data.Seed),
            seed);
    }

    /// <summary>The layer's name.</summary>
    public string Layer => _settings.Layer.Name;

    /// <summary>The unit's name.</summary>
    public string Unit => _settings.Unit.Name;

    /// <summary>Generate the bags, train, and test.</summary>
    /// <returns>The test accuracy, the forgotten attention mass and the training losses.</returns>
    public HopfieldReport Train()
    {
        var r = BitPatternTask.run(_settings, Microsoft.FSharp.Core.FuncConvert.FromAction<Training.Progress>(_ => { }));
        return new HopfieldReport(r.TestAccuracy, r.ForgottenMass, r.History.Select(h => h.TrainLoss).ToList());
    }
}
