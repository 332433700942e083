"""The ``paperscope`` command: a thin layer over the Explorer and the build pipeline.

Library errors become one line on stderr and exit code 2; nothing here knows about FAISS,
SQLite or the model.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from paperscope.errors import PaperscopeError
from paperscope.paper import Hit, Hits

EXIT_USER_ERROR = 2

store_option = click.option("--store", type=click.Path(file_okay=False, path_type=Path), default=None,
                            help="Store directory (default: $PAPERSCOPE_HOME or ~/.local/share/paperscope).")
k_option = click.option("-k", "k", type=click.IntRange(min=1, max=100_000), default=10, show_default=True,
                        help="Number of results.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
_MODES = ("dense", "lexical", "hybrid")  # rank.MODES; literal here so --help needs no FAISS import


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from paperscope.filters import _check_date

    try:
        return _check_date(f"--{param.name.replace('_', '-')}", value)
    except ValueError as e:
        raise click.BadParameter(str(e).split(": ", 1)[1]) from None


def ranking_options(f: Any) -> Any:
    """--mode, --why and the filters, shared by related, search and recommend."""
    options = [
        click.option("--mode", type=click.Choice(_MODES), default=None,
                     help="Ranking: dense (model vectors), lexical (BM25), hybrid (both; the default, best measured)."),
        click.option("--why", is_flag=True, help="Show why each paper matched: shared key terms, dense similarity."),
        click.option("--date-from", callback=_date, default=None,
                     help="Only papers dated on or after (YYYY[-MM[-DD]])."),
        click.option("--date-to", callback=_date, default=None,
                     help="Only papers dated on or before (YYYY[-MM[-DD]])."),
        click.option("--min-authors", type=click.IntRange(min=0), default=None,
                     help="Only papers with at least N authors."),
        click.option("--max-authors", type=click.IntRange(min=0), default=None,
                     help="Only papers with at most N authors."),
        click.option("--source", default=None, help="Only papers read from this page or file (path or file name)."),
        click.option("--where", multiple=True, metavar="KEY=VALUE",
                     help="Only papers whose metadata KEY equals VALUE (repeatable), e.g. organisation=Google."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _ranking_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    from paperscope.filters import parse_where

    return {"mode": opts["mode"], "why": opts["why"], "date_from": opts["date_from"], "date_to": opts["date_to"],
            "min_authors": opts["min_authors"], "max_authors": opts["max_authors"], "source": opts["source"],
            "where": parse_where(opts["where"]) or None}


def _one_line(message: str) -> str:
    """Escape what a terminal would act on (CR, LF, ESC, bidi overrides) so an error stays one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


class _Group(click.Group):
    """Turns every user error (library errors, bad options) into one line and exit code 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as e:
            where = f" (in {e.ctx.command_path})" if e.ctx else ""
            click.echo(_one_line(f"paperscope: error: {e.format_message()}{where}"), err=True)
        except (PaperscopeError, ValueError) as e:
            click.echo(_one_line(f"paperscope: error: {e}"), err=True)
        except (KeyboardInterrupt, click.Abort):
            click.echo("paperscope: interrupted; the store is unchanged (re-run to resume)", err=True)
            sys.exit(130)
        sys.exit(EXIT_USER_ERROR)


@click.group(cls=_Group)
@click.version_option(package_name="paperscope")
def main() -> None:
    """Explore research papers by meaning: index a corpus, then ask for related papers."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@store_option
@click.option("--lock", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="models.lock to use (default: $PAPERSCOPE_LOCK, ./models.lock, then the packaged one).")
@click.option("--prune", is_flag=True, help="Remove papers that are not in these inputs.")
@click.option("--rebuild", is_flag=True, help="Re-embed every paper (after changing the pinned model).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Texts embedded between checkpoints.")
@click.option("--index-type", type=click.Choice(["auto", "flat", "ivf", "hnsw"]), default="auto", show_default=True,
              help="FAISS index: exact flat, or approximate ivf / hnsw (auto: flat up to 50k papers, then ivf).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where to embed: this process, or Ray Data (needs paperscope[ray]; uses $RAY_ADDRESS if set).")
@click.option("--backend", type=click.Choice(["torch", "onnx-int8", "static"]), default=None,
              help="Embedding backend (default: the store's own, else torch); another one needs --rebuild.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@json_option
def index(paths: tuple[Path, ...], store: Path | None, lock: Path | None, prune: bool, rebuild: bool,
          chunk_size: int, index_type: str, engine: str, backend: str | None, quiet: bool, as_json: bool) -> None:
    """Index PATHS (files or directories; default: the bundled corpus) into the store.

    Re-running only embeds papers whose text changed; inputs add to what the store holds.
    """
    from paperscope.pipeline import build, default_progress

    report = build(list(paths) or None, store, lock=lock, prune=prune, rebuild=rebuild,
                   chunk_size=chunk_size, progress=default_progress(quiet or as_json),
                   index_type=None if index_type == "auto" else index_type, engine=engine, backend=backend)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for example in report.skip_examples:
            click.echo(f"skipped {example}", err=True)
        click.echo(report.summary())


def _print_hits(hits: list[Hit], as_json: bool, header: str) -> None:
    note = getattr(hits, "note", None)
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
        if note:
            click.echo(f"paperscope: {note}", err=True)
        return
    click.echo(header)
    if not hits:
        click.echo(f"  (no results: {note})" if note else "  (no results)")
        return
    width = shutil.get_terminal_size((100, 20)).columns
    id_w = max(len(h.paper.id) for h in hits)
    title_w = max(20, width - id_w - 16)
    click.echo(f"{'#':>3}  {'score':>5}  {'id':<{id_w}}  title")
    for h in hits:
        title = h.paper.title if len(h.paper.title) <= title_w else h.paper.title[: title_w - 1] + "…"
        click.echo(f"{h.rank:>3}  {h.score:5.3f}  {h.paper.id:<{id_w}}  {title}")
        if h.terms is not None:
            dense = "n/a" if h.dense is None else f"{h.dense:.3f}"
            lexical = "n/a" if h.lexical is None else f"{h.lexical:.3f}"
            terms = ", ".join(h.terms) or "(none)"
            click.echo(f"{'':>12}why: dense similarity {dense}, lexical {lexical}; shared terms: {terms}")
    if note:
        click.echo(f"  ({note})")


def _index_line(ix: dict[str, Any]) -> str:
    """e.g. 'ivf (IndexIVFFlat, nlist=2000, nprobe=16; recall@10 0.962 on 500 queries; built in 41.2s)'."""
    params = ", ".join(f"{k}={v}" for k, v in (ix.get("params") or {}).items())
    kind = {"IndexFlatIP": "flat"}.get(ix["type"], ix["type"])  # stores written before index types
    details = [ix.get("faiss", "IndexFlatIP") + (f", {params}" if params else "")]
    if "recall_at_10" in ix:
        exact = " (exact)" if kind == "flat" else f" on {ix.get('recall_queries')} queries"
        details.append(f"recall@10 {ix['recall_at_10']:.3f}{exact}")
    if "build_seconds" in ix:
        reused = f", reused from {ix['linked_from']}" if ix.get("linked_from") else ""
        details.append(f"built in {ix['build_seconds']:.1f}s{reused}")
    return f"{kind} ({'; '.join(details)})"


@main.command()
@click.argument("paper")
@store_option
@json_option
def show(paper: str, store: Path | None, as_json: bool) -> None:
    """Print one paper in full: PAPER is an id or an exact title.

    Example usage: paperscope show 2203.03466
    """
    import textwrap

    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        p = ex.paper(paper)
    if as_json:
        click.echo(json.dumps(p.to_dict(), indent=2, ensure_ascii=False))
        return
    width = min(100, shutil.get_terminal_size((100, 20)).columns)
    click.echo(p.title)
    click.echo(f"id: {p.id}")
    if p.authors:
        extra = (p.authors_count or 0) - len(p.authors)
        more = f" (+{extra} more)" if extra > 0 else ""
        click.echo("authors: " + ", ".join(p.authors) + more)
    for name, value in (("date", p.date), ("organisation", p.organisation), ("upvotes", p.upvotes),
                        ("categories", ", ".join(p.categories)), ("sources", ", ".join(p.sources)),
                        ("link", p.link)):
        if value not in (None, ""):
            click.echo(f"{name}: {value}")
    click.echo("")
    click.echo(textwrap.fill(p.abstract, width=width) if p.abstract else "(no abstract)")


@main.command()
@click.argument("paper")
@store_option
@k_option
@ranking_options
@json_option
def related(paper: str, store: Path | None, k: int, as_json: bool, **opts: Any) -> None:
    """Papers most related to PAPER (an id or an exact title)."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        target = ex.paper(paper)
        _print_hits(ex.related(target.id, k=k, **_ranking_kwargs(opts)), as_json,
                    f"Related to {target.id}: {target.title}")


@main.command()
@click.argument("text")
@store_option
@k_option
@ranking_options
@json_option
def search(text: str, store: Path | None, k: int, as_json: bool, **opts: Any) -> None:
    """Papers nearest to free TEXT (--mode lexical needs no model)."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        _print_hits(ex.search(text, k=k, **_ranking_kwargs(opts)), as_json, f"Nearest to {text!r}:")


@main.command()
@click.argument("papers", nargs=-1, required=True)
@click.option("--not", "negative", multiple=True, metavar="PAPER",
              help="A paper the results should be unlike (repeatable).")
@store_option
@k_option
@ranking_options
@json_option
def recommend(papers: tuple[str, ...], negative: tuple[str, ...], store: Path | None, k: int, as_json: bool,
              **opts: Any) -> None:
    """Papers like all of PAPERS (ids or exact titles) and unlike every --not PAPER."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        hits = ex.recommend(list(papers), list(negative), k=k, **_ranking_kwargs(opts))
        neg = f", unlike {len(negative)}" if negative else ""
        _print_hits(hits, as_json, f"Recommended from {len(papers)} papers{neg}:")


@main.command("eval")
@click.argument("labels", nargs=-1, type=click.Path(path_type=Path))
@store_option
@click.option("--weight", type=click.FloatRange(0.0, 1.0), default=None,
              help="Dense share of the hybrid score (default: the tuned one).")
@click.option("--tune", is_flag=True, help="Also choose the hybrid weight on the tuning split and print the curve.")
@json_option
def eval_(labels: tuple[Path, ...], store: Path | None, weight: float | None, tune: bool, as_json: bool) -> None:
    """Precision@10, recall@10, nDCG@10 and MAP of `related` for every ranking mode.

    LABELS are theme CSVs (title,theme) or query JSON files (query -> relevant titles); with
    none, the labels shipped for the bundled corpus. Held-out queries are never used by --tune.
    """
    from paperscope import evaluate as ev
    from paperscope.explorer import Explorer

    sets = [ev.load_labels(p) for p in labels] or ev.shipped_labels()
    with Explorer(store) as ex:
        curve = ev.tune(ex, sets) if tune else None
        results = [ex.evaluate(s, weight=weight)[0] for s in sets]
    if as_json:
        out: dict[str, Any] = {"results": [r.to_dict() for r in results]}
        if curve is not None:
            out["tuning"] = [{"weight": w, "ndcg@10": s} for w, s in curve]
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(ev.format_results(results))
    if curve is not None:
        best = max(curve, key=lambda ws: ws[1])
        click.echo("\ntuning split, hybrid nDCG@10 by dense weight:")
        click.echo("  " + "  ".join(f"{w:.2f}:{s:.3f}" for w, s in curve))
        click.echo(f"  best weight {best[0]:.2f} (nDCG@10 {best[1]:.3f})")


@main.command()
@store_option
@json_option
def info(store: Path | None, as_json: bool) -> None:
    """What the store holds and how the last build went."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        data = ex.info()
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    b = data["build"]
    rate = f"{b['texts_per_second']:.1f} texts/s" if b.get("texts_per_second") else "n/a"
    lines = [
        ("store", data["store"]),
        ("generation", f"{data['generation']} (created {data['created_at']})"),
        ("papers", str(data["counts"]["papers"])),
        ("model", f"{data['model']['name']} (fingerprint {data['model']['fingerprint']}, dim {data['model']['dimension']})"),
        ("index", _index_line(data["index"])),
        ("last build", f"{b['added']} added, {b['changed']} changed, {b['updated']} metadata-only, "
                       f"{b['unchanged']} unchanged, {b['removed']} removed; embedded {b['embedded']} "
                       f"in {b['seconds']:.1f}s ({rate})"),
        ("paperscope", data["paperscope_version"]),
    ]
    for key, value in lines:
        click.echo(f"{key:>11}  {value}")


@main.command("verify")
@store_option
@json_option
def verify_command(store: Path | None, as_json: bool) -> None:
    """Check every store file against the sha256 in its manifest (exit 1 if any is damaged)."""
    from paperscope.store import Store
    from paperscope.verify import verify

    report = verify(Store(store))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for f in report.findings:
            click.echo(_one_line(f"{'ok' if f.ok else 'DAMAGED':>7}  {f.path}: {f.detail}"))
        bad = len(report.damaged)
        click.echo(f"{report.store}: " + ("OK" if report.ok else f"{bad} problem{'s' * (bad != 1)} found"))
    if not report.ok:
        sys.exit(1)


@main.command("map")
@store_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for map.png, map.html and topics.json (default: STORE/map).")
@click.option("--refit", is_flag=True, help="Fit afresh instead of keeping the previous layout.")
@click.option("--topics", "fine_topics", type=click.IntRange(min=2), default=None,
              help="Number of fine topics (default: about sqrt(papers)).")
@click.option("--themes", "coarse_topics", type=click.IntRange(min=1), default=None,
              help="Number of coarse themes (default: about topics / 2.5).")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed for UMAP and k-means.")
@click.option("--open", "open_page", is_flag=True, help="Open map.html in the web browser afterwards.")
@json_option
def map_command(store: Path | None, out: Path | None, refit: bool, fine_topics: int | None,
                coarse_topics: int | None, seed: int, open_page: bool, as_json: bool) -> None:
    """Draw the topic map: map.png, a self-contained map.html and topics.json."""
    from paperscope.explorer import Explorer
    from paperscope.map import MapParams

    params = MapParams(seed=seed, fine_topics=fine_topics, coarse_topics=coarse_topics)
    with Explorer(store) as ex:
        tm = ex.topic_map(out, params=params, refit=refit)
    if as_json:
        click.echo(json.dumps({"stats": tm.stats, "topics": [t.to_dict() for t in tm.topics]}, indent=2,
                              ensure_ascii=False))
        if open_page:
            _open_page(Path(tm.stats["outputs"]["html"]))
        return
    s = tm.stats
    how = ("kept from the saved map, up to date" if s.get("cached")
           else "previous layout kept" if s.get("reused_fit") else "fitted")
    click.echo(f"map of {len(tm)} papers ({how}; {s['placed']} newly placed): {s['topics']['theme']} themes, "
               f"{s['topics']['topic']} topics, {s['low_confidence']} papers low-confidence; {s['seconds']:.1f}s")
    for t in sorted((t for t in tm.topics if t.level == 1), key=lambda t: -t.size):
        click.echo(f"  topic {t.id:>3}  {t.size:>5}  {t.label}")
    for kind, path in s["outputs"].items():
        click.echo(f"{kind:>7}: {path}")
    if open_page:
        _open_page(Path(s["outputs"]["html"]))


def _open_page(path: Path) -> None:
    """Open the page in the user's browser (webbrowser: the system's default, or $BROWSER)."""
    import webbrowser

    url = path.resolve().as_uri()
    if not webbrowser.open(url):
        click.echo(f"paperscope: no browser could be started; open {url}", err=True)


@main.group()
def model() -> None:
    """The pinned embedding model (models.lock)."""


@model.command("pin")
@click.argument("model_ref")
@click.option("--lock", type=click.Path(dir_okay=False, path_type=Path), default=Path("models.lock"),
              show_default=True, help="Lock file to rewrite.")
@click.option("--template", default=None, help="Text template, e.g. '{title}. {abstract}'.")
@click.option("--revision", default="main", show_default=True, help="Hub revision (hub models only).")
def pin_model(model_ref: str, lock: Path, template: str | None, revision: str) -> None:
    """Pin MODEL_REF (a local sentence-transformers directory, or hub:ORG/NAME) in the lock."""
    from paperscope.embed.lock import pin

    if model_ref.startswith("hub:"):
        from huggingface_hub import snapshot_download  # the user asked for a hub model

        repo = model_ref.removeprefix("hub:")
        path = Path(snapshot_download(repo, revision=revision))
        source = {"kind": "hub", "repo": repo, "revision": path.name}
        name = repo
    else:
        path = Path(model_ref).expanduser().resolve()
        source, name = {"kind": "directory", "path": str(path)}, path.name
    new = pin(path, source, name, template=template)
    lock.write_text(new.to_json(), encoding="utf-8")
    click.echo(f"pinned {name} ({len(new.files)} files, dim {new.dimension}, fingerprint {new.fingerprint}) in {lock}")


if __name__ == "__main__":
    main()
