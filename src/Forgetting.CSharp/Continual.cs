using Forgetting.Data;
using Forgetting.Experiments;
using Forgetting.Mechanisms;
using Forgetting.Nn;
using Forgetting.Training;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;

namespace Forgetting.CSharp;

/// <summary>One metric of a continual run, derived from its accuracy matrix.</summary>
/// <param name="Name">Its short name ("ACC", "BWT", …).</param>
/// <param name="Definition">Its definition in terms of the accuracy matrix R, with its source.</param>
/// <param name="Value">Its value; null where the run has too few tasks for it.</param>
public sealed record MetricReport(string Name, string Definition, double? Value);

/// <summary>What learning one task gave.</summary>
/// <param name="Task">The task, from 0.</param>
/// <param name="Accuracies">The accuracy on every task of the sequence after learning it.</param>
public sealed record TaskReport(int Task, IReadOnlyList<double> Accuracies);

/// <summary>A continual run's results.</summary>
/// <param name="Tasks">The tasks' names, in the order they were learned.</param>
/// <param name="Accuracy">The accuracy matrix R: row 0 at initialisation, row i after task i; column j is task j.</param>
/// <param name="Metrics">Every metric of R with its definition.</param>
/// <param name="RecipeJson">The run's full description, to store beside the results and run again.</param>
/// <param name="Model">The model after the last task, e.g. for its MAS importance.</param>
public sealed record ContinualResult(IReadOnlyList<string> Tasks, IReadOnlyList<IReadOnlyList<double>> Accuracy,
    IReadOnlyList<MetricReport> Metrics, string RecipeJson, TrainedModel Model);

/// <summary>
/// A continual-learning run: a task sequence (permuted, split, sequence or stream) in Task-, Domain- or
/// Class-IL, learned by a method (none, joint, ewc, online-ewc, si, mas, mas-local, …) on an MLP. Build it, then
/// run it (from the data cache, or on data in memory); nothing is trained before.
/// </summary>
public sealed class ContinualExperiment
{
    private readonly Recipe _recipe;

    private ContinualExperiment(Recipe recipe) => _recipe = ContinualRun.validate(Catalog.terms, recipe);

    /// <summary>Describe a run; every value is checked now.</summary>
    /// <param name="scenario">permuted, split, sequence or stream.</param>
    /// <param name="setting">task (a head per task), domain (one head) or class (one head over the classes seen).</param>
    /// <param name="method">none (fine-tuning), joint, ewc, online-ewc, si, ewc_f, mas, mas-local (Hebbian MAS), mas_f or mas-local_f.</param>
    /// <param name="tasks">Tasks of a permuted or stream scenario (null: 10 permuted, 5 stream).</param>
    /// <param name="classesPerTask">Classes per task of a split scenario.</param>
    /// <param name="data">The data sets by name (null: mnist; a sequence takes mnist then fashion-mnist).</param>
    /// <param name="hidden">Hidden layer sizes (null: 512, 256).</param>
    /// <param name="epochsPerTask">Epochs per task.</param>
    /// <param name="batchSize">Examples per step.</param>
    /// <param name="learningRate">SGD's learning rate.</param>
    /// <param name="seed">The seed of initialisation, batches and anything random in the terms.</param>
    /// <param name="trainLimit">At most this many training examples per task (0: all).</param>
    /// <param name="forgettingLayers">A forgetting layer after every hidden ReLU, with its ERS and IRS terms.</param>
    /// <param name="methodSettings">Settings of the method's penalty, e.g. ("lambda", 100) for EWC, ("c", 0.1) for SI, ("mas_lambda", 1) for MAS.</param>
    /// <param name="terms">Settings of the run's terms, or terms to add, as "kind:setting=value,…".</param>
    /// <exception cref="ArgumentException">A value out of range, an unknown name, a bad setting.</exception>
    public ContinualExperiment(string scenario = "permuted", string setting = "task", string method = "ewc",
        int? tasks = null, int classesPerTask = 2, IReadOnlyList<string>? data = null, IReadOnlyList<int>? hidden = null,
        int epochsPerTask = 1, int batchSize = 128, double learningRate = 0.01, long seed = 1, int trainLimit = 0,
        bool forgettingLayers = false, IReadOnlyDictionary<string, double>? methodSettings = null,
        IEnumerable<string>? terms = null)
        : this(Build(scenario, setting, method, tasks, classesPerTask, data, hidden, epochsPerTask, batchSize,
            learningRate, seed, trainLimit, forgettingLayers, methodSettings, terms))
    {
    }

    private static Recipe Build(string scenario, string setting, string method, int? tasks, int classesPerTask,
        IReadOnlyList<string>? data, IReadOnlyList<int>? hidden, int epochsPerTask, int batchSize, double learningRate,
        long seed, int trainLimit, bool forgettingLayers, IReadOnlyDictionary<string, double>? methodSettings,
        IEnumerable<string>? terms)
    {
        var d = RecipeModule.defaults;
        var spec = new ScenarioSpec(scenario, setting,
            data is null ? RecipeModule.defaultData(scenario) : ListModule.OfSeq(data),
            tasks ?? RecipeModule.defaultTasks(scenario), classesPerTask, d.Scenario.ClassOrder, d.Scenario.PermuteFirst,
            d.Scenario.Seed, trainLimit);
        var layer = forgettingLayers ? FSharpOption<ForgettingLayerConfig>.Some(ForgettingLayerConfig.Default) : null;
        var layerTerms = forgettingLayers
            ? ActiveForgetting.kinds.Select(k => TermKindModule.spec(Catalog.terms, k.Name, FSharpList<Tuple<string, SettingValue>>.Empty))
            : Enumerable.Empty<TermSpec>();
        var optimizer = new OptimizerSpec(d.Optimizer.Kind, learningRate, d.Optimizer.Momentum, d.Optimizer.Nesterov,
            d.Optimizer.WeightDecay, d.Optimizer.Beta1, d.Optimizer.Beta2, d.Optimizer.Eps, d.Optimizer.ResetPerTask, d.Optimizer.Meta);
        var recipe = new Recipe(method, spec, RecipeModule.mlp(hidden is null ? d.Model.Hidden : ListModule.OfSeq(hidden), layer),
            d.Training, ListModule.OfSeq(layerTerms), optimizer, epochsPerTask, batchSize, seed, d.Study);
        var settings = (methodSettings ?? new Dictionary<string, double>())
            .Select(kv => Tuple.Create(kv.Key, SettingValue.NewNumber(kv.Value)));
        var withMethod = Methods.apply(method, ListModule.OfSeq(settings), recipe);
        var overrides = (terms ?? Enumerable.Empty<string>()).Select(t => TermKindModule.parseOverride(Catalog.terms, t));
        return new Recipe(withMethod.Label, withMethod.Scenario, withMethod.Model, withMethod.Training,
            TermKindModule.apply(Catalog.terms, ListModule.OfSeq(overrides), withMethod.Terms),
            withMethod.Optimizer, withMethod.EpochsPerTask, withMethod.BatchSize, withMethod.Seed, withMethod.Study);
    }

    /// <summary>
    /// A binarized net (Laborieux et al. 2021: sign weights and activations, batch norm after every layer) learning a
    /// task sequence with metaplastic Adam, the reference code's protocol: Adam re-created at every task, L2 decay 1e-7
    /// on the hidden weights, hidden weights from U(−0.05, 0.05).
    /// </summary>
    /// <param name="metaplasticity">m: one value for every layer, or one per layer (fc1, fc2, …, out); 0 is plain Adam.</param>
    /// <param name="scenario">permuted, split, sequence or stream.</param>
    /// <param name="setting">task, domain (the reference's, one head) or class.</param>
    /// <param name="tasks">Tasks of a permuted or stream scenario (null: 10 permuted, 5 stream).</param>
    /// <param name="hidden">Hidden layer sizes (null: 512, 512).</param>
    /// <param name="normState">Which batch-norm γ, β test a learned task: task (its own, the reference's) or domain (the current ones).</param>
    /// <param name="method">none, or ewc (anchored at the binary weights) and the other penalties.</param>
    /// <param name="data">The data sets by name (null: mnist; a sequence takes mnist then fashion-mnist).</param>
    /// <param name="epochsPerTask">Epochs per task.</param>
    /// <param name="batchSize">Examples per step (the reference's 100).</param>
    /// <param name="learningRate">Adam's learning rate (the reference's 0.005).</param>
    /// <param name="seed">The seed of initialisation and batches.</param>
    /// <param name="trainLimit">At most this many training examples per task (0: all).</param>
    /// <exception cref="ArgumentException">A value out of range (m &lt; 0, a width of 0, an unknown name).</exception>
    public static ContinualExperiment Binarized(IReadOnlyList<double> metaplasticity, string scenario = "permuted",
        string setting = "domain", int? tasks = null, IReadOnlyList<int>? hidden = null, string normState = "task",
        string method = "none", IReadOnlyList<string>? data = null, int epochsPerTask = 1, int batchSize = 100,
        double learningRate = 0.005, long seed = 1, int trainLimit = 0)
    {
        ArgumentNullException.ThrowIfNull(metaplasticity);
        var d = RecipeModule.defaults;
        var spec = new ScenarioSpec(scenario, setting,
            data is null ? RecipeModule.defaultData(scenario) : ListModule.OfSeq(data),
            tasks ?? RecipeModule.defaultTasks(scenario), d.Scenario.ClassesPerTask, d.Scenario.ClassOrder,
            d.Scenario.PermuteFirst, d.Scenario.Seed, trainLimit);
        var b = RecipeModule.binarized(hidden is null ? ListModule.OfSeq(new[] { 512, 512 }) : ListModule.OfSeq(hidden));
        var model = new ModelSpec(b.Hidden, b.Forgetting, b.Kind, b.Norm, b.Affine, normState, b.InitScale);
        var m = RecipeModule.metaplastic(ListModule.OfSeq(metaplasticity));
        var optimizer = new OptimizerSpec(m.Kind, learningRate, m.Momentum, m.Nesterov, m.WeightDecay, m.Beta1, m.Beta2,
            m.Eps, m.ResetPerTask, m.Meta);
        var recipe = new Recipe(method, spec, model, d.Training, FSharpList<TermSpec>.Empty, optimizer, epochsPerTask,
            batchSize, seed, d.Study);
        return new ContinualExperiment(Methods.apply(method, FSharpList<Tuple<string, SettingValue>>.Empty, recipe));
    }

    /// <summary>A run described by a recipe.json from a results folder.</summary>
    /// <exception cref="ArgumentException">The file is missing, not JSON, or describes a run that cannot be made.</exception>
    public static ContinualExperiment FromRecipe(string path) => new(RecipeModule.load(Catalog.terms, path));

    /// <summary>The run's full description, as JSON.</summary>
    public string RecipeJson => RecipeModule.toText(_recipe);

    /// <summary>Run on the data sets the recipe names, from the data cache.</summary>
    /// <param name="cacheDirectory">The cache; by default $FORGETTING_DATA, else ~/.cache/forgetting.</param>
    /// <param name="onTask">Called after every task, e.g. to show progress.</param>
    /// <param name="checkpointFolder">Where to keep a checkpoint after every task; a run that finds some there goes on from the latest.</param>
    /// <exception cref="DataError">A data set is not in the cache, or a file is corrupt.</exception>
    public ContinualResult Run(string? cacheDirectory = null, Action<TaskReport>? onTask = null, string? checkpointFolder = null)
    {
        var cache = Cache.directory(cacheDirectory is null ? FSharpOption<string>.None : FSharpOption<string>.Some(cacheDirectory));
        return Run(FuncConvert.FromFunc<KnownDataset, TrainTest>(d => Cache.load(cache, d)), onTask, checkpointFolder);
    }

    /// <summary>Run on data given in memory, in place of the data sets the recipe names.</summary>
    /// <param name="data">The training and test parts (one per data set of a sequence, in order).</param>
    /// <param name="onTask">Called after every task.</param>
    /// <param name="checkpointFolder">Where to keep a checkpoint after every task.</param>
    public ContinualResult Run(IReadOnlyList<TrainTestSplit> data, Action<TaskReport>? onTask = null, string? checkpointFolder = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        var names = _recipe.Scenario.Data.ToList();
        if (data.Count != names.Count)
            throw new ArgumentException($"the recipe names {names.Count} data set(s), {data.Count} were given", nameof(data));
        return Run(FuncConvert.FromFunc<KnownDataset, TrainTest>(d =>
        {
            var i = names.IndexOf(KnownDatasetModule.name(d));
            return new TrainTest(data[i].Train.Data, data[i].Test.Data);
        }), onTask, checkpointFolder);
    }

    private ContinualResult Run(FSharpFunc<KnownDataset, TrainTest> load, Action<TaskReport>? onTask, string? checkpointFolder)
    {
        var progress = FuncConvert.FromAction<ContinualProgress>(p =>
        {
            if (onTask is not null && p is ContinualProgress.TaskDone done)
                onTask(new TaskReport(done.task, done.accuracies));
        });
        var folder = checkpointFolder is null ? FSharpOption<string>.None : FSharpOption<string>.Some(checkpointFolder);
        var r = ContinualRun.run(Catalog.terms, load, progress, folder, _recipe);
        return new ContinualResult(
            r.TaskNames,
            r.R.Select(row => (IReadOnlyList<double>)row).ToList(),
            ContinualRun.metrics(r).Select(m => new MetricReport(m.Name, m.Definition,
                OptionModule.IsSome(m.Value) ? m.Value.Value : null)).ToList(),
            RecipeModule.toText(r.Recipe),
            new TrainedModel(Importance.modelOf(r.Recipe.Model, r.Final.State.Params), r.Final.State.Params));
    }
}
