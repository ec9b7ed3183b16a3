using Forgetting.Experiments;
using Forgetting.Mechanisms;
using Forgetting.Nn;
using Forgetting.Tensors;
using Forgetting.Training;
using Microsoft.FSharp.Core;
using TensorOps = Forgetting.Tensors.TensorModule;

namespace Forgetting.CSharp;

/// <summary>The importance of one parameter tensor, flat in row-major order.</summary>
/// <param name="Name">The tensor's path in the model ("fc1/weight", "out/head2/bias").</param>
/// <param name="Shape">Its shape.</param>
/// <param name="Values">One importance per parameter.</param>
public sealed record ParameterImportance(string Name, IReadOnlyList<int> Shape, IReadOnlyList<double> Values);

/// <summary>
/// An MLP with its parameters: the model a continual run ended with (<see cref="ContinualResult.Model"/>),
/// or a fresh one. Its parameter importance is read from inputs alone, no labels: memory aware synapses
/// (Aljundi et al. 2018), global or local (Hebbian).
/// </summary>
public sealed class TrainedModel
{
    private readonly Layer _model;
    private readonly Params _params;

    internal TrainedModel(Layer model, Params parameters)
    {
        _model = model;
        _params = parameters;
    }

    /// <summary>A fresh MLP (dense → ReLU per hidden layer, one output layer), initialised from a seed.</summary>
    /// <exception cref="ArgumentException">A width below 1.</exception>
    public static TrainedModel Mlp(int features, IReadOnlyList<int> hidden, int outputs, long seed = 1)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        if (features < 1 || outputs < 1 || hidden.Count == 0 || hidden.Any(h => h < 1))
            throw new ArgumentException($"an MLP needs widths of at least 1 and a hidden layer, got {features}, [{string.Join(", ", hidden)}], {outputs}");
        var spec = RecipeModule.mlp(Microsoft.FSharp.Collections.ListModule.OfSeq(hidden), FSharpOption<ForgettingLayerConfig>.None);
        var model = ContinualRun.model(spec, features, Microsoft.FSharp.Collections.ListModule.OfSeq(new[] { outputs }));
        return new TrainedModel(model, model.Init.Invoke(RngModule.create(seed)).Invoke(DType.Float32));
    }

    /// <summary>The parameters' paths, in order.</summary>
    public IReadOnlyList<string> ParameterNames => ParamsModule.flatten(_params).Select(t => t.Item1).ToList();

    /// <summary>
    /// MAS importance on unlabeled inputs. Global (the default): Ω = (1/N) Σ_k |∂‖F(x_k)‖²/∂θ| with F the
    /// logits of the task's head, the model in evaluation mode, per sample (exact) or in the batched form of
    /// the official demo. Local: Ω_ij = (1/N) Σ_k |y_i y_j|, Hebb's rule, no gradient.
    /// </summary>
    /// <param name="inputs">N inputs, row after row (N × the model's input width values).</param>
    /// <param name="task">The task whose head gives F (0 for a single head).</param>
    /// <param name="local">Local, Hebbian MAS instead of the global one.</param>
    /// <param name="norm">Global: "l2" (‖F‖², the paper's) or "l1".</param>
    /// <param name="meanOverOutputs">Global: the norm's mean over the outputs instead of its sum.</param>
    /// <param name="batchSize">Global: the batched form with this batch size; null for per-sample gradients.</param>
    /// <exception cref="ArgumentException">No inputs, a length that is not a multiple of the input width, a bad option.</exception>
    public IReadOnlyList<ParameterImportance> MasImportance(float[] inputs, int task = 0, bool local = false,
        string norm = "l2", bool meanOverOutputs = false, int? batchSize = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var features = ParamsModule.tensor("fc1/weight", _params).Shape[0];
        if (inputs.Length == 0 || inputs.Length % features != 0)
            throw new ArgumentException($"MAS needs at least one input of {features} values, got {inputs.Length} values", nameof(inputs));
        var settings = new MasSettings(
            1.0,
            local ? Forgetting.Mechanisms.MasImportance.Local : Forgetting.Mechanisms.MasImportance.Global,
            norm switch
            {
                "l2" => MasNorm.SquaredL2,
                "l1" => MasNorm.L1,
                _ => throw new ArgumentException($"unknown norm '{norm}'; known: l2, l1", nameof(norm)),
            },
            meanOverOutputs,
            batchSize is int b ? FSharpOption<int>.Some(b) : FSharpOption<int>.None,
            FSharpOption<double>.None,
            FSharpOption<int>.None);
        var x = TensorOps.ofArray(new[] { inputs.Length / features, features }, inputs);
        var omega = Mas.importanceOf(settings, _model, task, FSharpOption<int>.None, _params, x);
        return ParamsModule.flatten(omega)
            .Select(t => new ParameterImportance(t.Item1, t.Item2.Shape, t.Item2.ToFloat64Array()))
            .ToList();
    }

    /// <summary>MAS importance on the inputs of a data set (its labels are not used).</summary>
    public IReadOnlyList<ParameterImportance> MasImportance(DataSet inputs, int task = 0, bool local = false,
        string norm = "l2", bool meanOverOutputs = false, int? batchSize = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var x = ExamplesModule.ofDataset(inputs.Data).Inputs;
        return MasImportance(x.ToArray(), task, local, norm, meanOverOutputs, batchSize);
    }
}
