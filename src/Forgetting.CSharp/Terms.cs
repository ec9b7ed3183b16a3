using Forgetting.Experiments;

namespace Forgetting.CSharp;

/// <summary>One setting of an objective term kind.</summary>
/// <param name="Name">The name used in "kind:setting=value".</param>
/// <param name="Description">What it means.</param>
/// <param name="Default">Its default, as text.</param>
public sealed record TermSettingInfo(string Name, string Description, string Default);

/// <summary>A kind of objective term a run can name: a regulariser, a mechanism's loss or a penalty.</summary>
/// <param name="Name">The kind's name ("ers", "l2", "ewc", …).</param>
/// <param name="Description">What the term computes.</param>
/// <param name="Settings">The settings it takes.</param>
public sealed record TermInfo(string Name, string Description, IReadOnlyList<TermSettingInfo> Settings);

/// <summary>The objective terms the library offers, gathered from its mechanisms.</summary>
public static class Terms
{
    /// <summary>Every term kind, with its settings and their defaults.</summary>
    public static IReadOnlyList<TermInfo> Kinds { get; } =
        Catalog.terms
            .Select(k => new TermInfo(k.Name, k.Doc,
                k.Settings.Select(s => new TermSettingInfo(s.Name, s.Doc, s.Default.ToString())).ToList()))
            .ToList();
}
