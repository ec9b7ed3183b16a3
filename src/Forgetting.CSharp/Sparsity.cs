using Core = Forgetting.Analysis.Sparsity;

namespace Forgetting.CSharp;

/// <summary>Treves-Rolls sparsity of a population code (source 000, eq. 1).</summary>
public static class Sparsity
{
    /// <summary>
    /// Sparsity of per-unit mean activations: 0 when all units are equally active, 1 when a single unit
    /// carries all the activity.
    /// </summary>
    /// <param name="meanActivations">The mean activation of each unit; at least two, all finite and non-negative.</param>
    /// <returns>The sparsity, in [0, 1].</returns>
    /// <exception cref="ArgumentException">Fewer than two units, or a negative or non-finite activation.</exception>
    public static double TrevesRolls(IReadOnlyList<double> meanActivations)
    {
        ArgumentNullException.ThrowIfNull(meanActivations);
        return Core.trevesRolls(meanActivations.ToArray());
    }

    /// <summary>Sparsity of a layer from its activations: samples in rows, units in columns.</summary>
    /// <param name="activations">The activations, one row per sample and one column per unit.</param>
    /// <returns>The sparsity of the per-unit means, in [0, 1].</returns>
    /// <exception cref="ArgumentException">No rows, fewer than two columns, or a negative or non-finite mean.</exception>
    public static double OfActivations(double[,] activations)
    {
        ArgumentNullException.ThrowIfNull(activations);
        return Core.ofActivations(activations);
    }
}
