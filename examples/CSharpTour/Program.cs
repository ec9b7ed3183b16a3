// The C# face: `dotnet run --project examples/CSharpTour -c Release` (after `forgetting data fetch fashion-mnist`).
using Forgetting.CSharp;

// A gradient: d/dx Σ x² = 2x.
var x = Tensors.FromArray(new[] { 1.0, -2.0, 3.0 }, 3);
var grad = Autodiff.Grad(t => t.Square().Sum(), x);
Console.WriteLine($"grad of sum(x^2) at [1, -2, 3]: [{string.Join(", ", grad.ToFloat64Array())}]");

// A net with a forgetting layer after each hidden ReLU, trained on Fashion-MNIST from the data cache.
var data = DataSet.Load("fashion-mnist");
var net = new MlpClassifier(new[] { 128, 64 }, variant: "lateral_inhibition");
var result = net.Train(data.Train, data.Test, epochs: 3, seed: 1,
    onEpoch: e => Console.WriteLine($"epoch {e.Epoch}: test accuracy {e.TestAccuracy:P2}"));

foreach (var layer in result.Layers)
{
    var important = layer.Importance!.Count(omega => omega > 0.5);
    Console.WriteLine($"hidden layer {layer.Layer}: sparsity {layer.Sparsity:F3}, {important} of {layer.Importance!.Count} units with importance > 0.5");
}

// Continual learning: split MNIST (five tasks of two digits) in Class-IL with EWC, from the data cache.
var run = new ContinualExperiment(scenario: "split", setting: "class", method: "ewc", epochsPerTask: 2,
    methodSettings: new Dictionary<string, double> { ["lambda"] = 1e2 });
var sequence = run.Run(onTask: t =>
    Console.WriteLine($"after task {t.Task + 1}: accuracy per task {string.Join(" ", t.Accuracies.Select(a => a.ToString("F2")))}"));
foreach (var m in sequence.Metrics)
    Console.WriteLine($"{m.Name} = {(m.Value is double v ? v.ToString("F4") : "undefined")}");
