"""Human-readable rendering of a Prediction with rich (used by locate and explain)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from avgeo.prediction import Prediction


def _fmt_area(a: float) -> str:
    return f"{a:,.0f} km²" if a >= 10 else f"{a:.2f} km²"


def _reasoner_mismatch(r) -> str:
    """'its point lies in X, not Y' when the reasoner's point falls outside the country or
    admin-1 its own chain names; '' when they agree or the point is at sea."""
    from avgeo.geo.regions import country_name
    from avgeo.reasoning.reasoner.reward import fold_name

    said = {c.get("level"): c for c in r.chain}
    cc = said.get("country", {}).get("code", "")
    if cc and r.point_country and r.point_country != cc:
        return f"its point lies in {country_name(r.point_country)}, not {country_name(cc)}"
    a1 = said.get("admin1", {}).get("name", "")
    # The reward's own name match, so "a mismatch" here is a miss in training too.
    if a1 and r.point_admin1 and fold_name(a1) != fold_name(r.point_admin1):
        return f"its point lies in {r.point_admin1}, not {a1}"
    return ""


def render_prediction(pred: Prediction, console: Console, explain: bool = False) -> None:
    dur = f", {pred.duration_s:.1f} s" if pred.duration_s else ""
    console.print(f"[bold]{pred.file}[/bold] ({pred.kind}{dur})")
    console.print(f"  location: [bold green]{pred.lat:.5f}, {pred.lon:.5f}[/bold green] "
                  f"[dim]({pred.point_method})[/dim]")
    if pred.chain:
        chain = " → ".join(f"{c.name or c.code} [dim]{c.probability:.0%}[/dim]"
                           for c in pred.chain)
        console.print(f"  chain:    {chain}")
    if pred.reasoner is not None:
        r = pred.reasoner
        if r.parsed:
            rc = " → ".join(c.get("name") or c.get("code", "") for c in r.chain)
            console.print(f"  reasoner: {rc} [dim]({r.lat:.3f}, {r.lon:.3f})[/dim]",
                          highlight=False)
            mismatch = _reasoner_mismatch(r)
            if mismatch:
                console.print(f"            [yellow]{mismatch}[/yellow]", highlight=False)
        else:
            console.print("  reasoner: [yellow]no parsable answer[/yellow]")
    for c in pred.credible_regions:
        console.print(f"  {c.level:.0%} credible region: {_fmt_area(c.area_km2)} "
                      f"({c.n_cells} cells)")
    if pred.regions:
        t = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        t.add_column("#")
        t.add_column("lat, lon")
        t.add_column("probability", justify="right")
        t.add_column("area", justify="right")
        for i, r in enumerate(pred.regions, 1):
            t.add_row(str(i), f"{r.lat:.3f}, {r.lon:.3f}", f"{r.probability:.1%}",
                      _fmt_area(r.area_km2))
        console.print("  top regions:")
        console.print(t)
    if pred.rationale:
        console.print("  why:")
        for s in pred.rationale:
            console.print(f"   • {s}", highlight=False)
    if explain and pred.counterfactuals:
        console.print("  without each piece of evidence:")
        for cf in pred.counterfactuals:
            console.print(f"   • without {cf.evidence!r}: {cf.country or 'no country'} "
                          f"{cf.country_probability:.0%}, answer moves {cf.moved_km:,.0f} km",
                          highlight=False)
    if pred.engines.skipped:
        for s in pred.engines.skipped:
            console.print(f"  [yellow]engine {s.name} skipped:[/yellow] {s.reason}",
                          highlight=False)
    for n in pred.notes:
        console.print(f"  [dim]note: {n}[/dim]", highlight=False)
