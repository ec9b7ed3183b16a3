// The C# face: `dotnet run --project examples/CSharpTour -c Release`.
using Forgetting.CSharp;

// Two samples of four units: units 0 and 1 each fire once, units 2 and 3 never do.
var activations = new double[,] { { 2.0, 0.0, 0.0, 0.0 }, { 0.0, 2.0, 0.0, 0.0 } };
Console.WriteLine($"two of four units active: S = {Sparsity.OfActivations(activations):F3}");
