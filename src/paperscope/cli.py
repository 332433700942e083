"""The ``paperscope`` command: a thin layer over the Explorer and the build pipeline.

Library errors (:class:`~paperscope.errors.PaperscopeError`, and click's own usage errors) become
one line on stderr and exit code 2; any other exception is a bug and keeps its traceback. Nothing
here knows about FAISS, SQLite or the model; the choices offered come from the library.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from paperscope.choices import CHUNK_SIZE, DEFAULT_ENGINE, DTYPES, ENGINES, INDEX_TYPES, MAP_MAX_FIT, MODES
from paperscope.errors import InvalidArgument, PaperscopeError
from paperscope.paper import Hit
from paperscope.terminal import dumps, echo_query, shown, shown_lines

EXIT_USER_ERROR = 2
CONTEXT = {"help_option_names": ["-h", "--help"]}

store_option = click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="PAPERSCOPE_HOME",
    show_envvar=True,
    help="Store directory (default: $PAPERSCOPE_HOME, else ~/.local/share/paperscope).",
)
k_option = click.option(
    "-k", "k", type=click.IntRange(min=1, max=100_000), default=10, show_default=True, help="Number of results."
)


def json_option(f: Any) -> Any:
    """--json (one document) and --jsonl (one JSON object per line, for pipes)."""
    f = click.option("--jsonl", "as_jsonl", is_flag=True, help="Print one JSON object per line (for pipes).")(f)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(f)


def example(text: str) -> dict[str, Any]:
    """Command settings whose help ends with an example (and that accept -h)."""
    return {"epilog": f"\b\nExample: {text}", "context_settings": CONTEXT}  # \b: click keeps the line whole


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from paperscope.filters import parse_date

    if value is None:
        return None
    try:
        return parse_date(value)
    except InvalidArgument as e:
        raise click.BadParameter(str(e)) from None


def _emit(data: Any, as_json: bool, as_jsonl: bool) -> bool:
    """Print ``data`` as JSON (indented) or JSON lines (one object per list item); False if neither."""
    if as_jsonl:
        for item in data if isinstance(data, list) else [data]:
            click.echo(dumps(item))
        return True
    if as_json:
        click.echo(dumps(data, indent=2))
        return True
    return False


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """FloatRange lets NaN through (every comparison with it is false): refuse it here."""
    if value is not None and value != value:
        raise click.BadParameter("must be a number, not nan")
    return value


def ranking_options(f: Any) -> Any:
    """--mode, --why and the filters, shared by related, search and recommend."""
    options = [
        click.option(
            "--mode",
            type=click.Choice(MODES),
            default=None,
            help="Ranking: dense (model vectors), lexical (TF-IDF), hybrid (both; the default, best measured).",
        ),
        click.option("--why", is_flag=True, help="Show why each paper matched: shared key terms, dense similarity."),
        click.option(
            "--min-score",
            type=click.FloatRange(0.0, 1.0),
            default=None,
            help="Drop hits scoring below this (scores are calibrated probabilities of being related).",
        ),
        click.option(
            "--date-from", callback=_date, default=None, help="Only papers dated on or after (YYYY[-MM[-DD]])."
        ),
        click.option(
            "--date-to", callback=_date, default=None, help="Only papers dated on or before (YYYY[-MM[-DD]])."
        ),
        click.option(
            "--min-authors", type=click.IntRange(min=0), default=None, help="Only papers with at least N authors."
        ),
        click.option(
            "--max-authors", type=click.IntRange(min=0), default=None, help="Only papers with at most N authors."
        ),
        click.option("--source", default=None, help="Only papers read from this page or file (path or file name)."),
        click.option(
            "--where",
            multiple=True,
            metavar="KEY=VALUE",
            help="Only papers whose metadata KEY equals VALUE (repeatable), e.g. organisation=Google.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _ranking_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    from paperscope.filters import parse_where

    return {
        "mode": opts["mode"],
        "why": opts["why"],
        "date_from": opts["date_from"],
        "date_to": opts["date_to"],
        "min_authors": opts["min_authors"],
        "max_authors": opts["max_authors"],
        "source": opts["source"],
        "where": parse_where(opts["where"]) or None,
        "min_score": opts["min_score"],
    }


def _one_line(message: str) -> str:
    """Escape what a terminal would act on (CR, LF, ESC, bidi overrides) so an error stays one line."""
    return shown(message)


class _Group(click.Group):
    """Turns every user error (library errors, bad options) into one line and exit code 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as e:
            where = f" (in {e.ctx.command_path})" if e.ctx else ""
            click.echo(_one_line(f"paperscope: error: {e.format_message()}{where}"), err=True)
        except PaperscopeError as e:  # not a bare ValueError: that is a bug, and keeps its traceback
            click.echo(_one_line(f"paperscope: error: {e}"), err=True)
        except OSError as e:  # the file system refused: name the path and the cause, on one line
            where = f"{os.fsdecode(e.filename)}: " if e.filename is not None else ""
            click.echo(
                _one_line(
                    f"paperscope: error: {where}{e.strerror or e}; check the path, its permissions and free space"
                ),
                err=True,
            )
        except (KeyboardInterrupt, click.Abort):
            click.echo("paperscope: interrupted; the store is unchanged (re-run to resume)", err=True)
            sys.exit(130)
        sys.exit(EXIT_USER_ERROR)


@click.group(
    cls=_Group, context_settings=CONTEXT, epilog="\b\nExample: paperscope index && paperscope related 2106.09685"
)
@click.version_option(package_name="paperscope")
def main() -> None:
    """Explore research papers by meaning: index a corpus, then ask for related papers."""


def _backends() -> tuple[str, ...]:
    from paperscope.embed.registry import BACKENDS

    return BACKENDS


@main.command(**example("paperscope index papers.jsonl --store ~/papers"))
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@store_option
@click.option(
    "--lock",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="models.lock to use (default: $PAPERSCOPE_LOCK, ./models.lock, then the packaged one).",
)
@click.option("--prune", is_flag=True, help="Remove papers that are not in these inputs.")
@click.option("--rebuild", is_flag=True, help="Re-embed every paper (after changing the pinned model).")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=CHUNK_SIZE,
    show_default=True,
    help="Texts embedded between checkpoints.",
)
@click.option(
    "--index-type",
    type=click.Choice(["auto", *INDEX_TYPES]),
    default="auto",
    show_default=True,
    help="FAISS index: exact flat, or approximate ivf / hnsw (auto: flat up to 50k papers, then ivf).",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default=DEFAULT_ENGINE,
    show_default=True,
    help="Where to embed: this process, or Ray actors (needs paperscope[ray]; uses $RAY_ADDRESS if set).",
)
@click.option(
    "--backend",
    type=click.Choice(_backends()),
    default=None,
    help="Embedding backend (default: the store's own, else models.lock's, shipped: onnx-int8-solo-v2); another needs --rebuild.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar="auto|cpu|cuda|cuda:N|mps",
    help="Where the torch backend embeds: auto picks the GPU when torch sees one, else the CPU.",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="auto",
    show_default=True,
    help="Precision of the forward pass (auto: float16 on CUDA, float32 elsewhere).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Tokenizer processes feeding the GPU (default: cores - 2).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@json_option
def index(
    paths: tuple[Path, ...],
    store: Path | None,
    lock: Path | None,
    prune: bool,
    rebuild: bool,
    chunk_size: int,
    index_type: str,
    engine: str,
    backend: str | None,
    device: str,
    dtype: str,
    workers: int | None,
    quiet: bool,
    as_json: bool,
    as_jsonl: bool,
) -> None:
    """Index PATHS (files or directories; default: the bundled corpus) into the store.

    Re-running only embeds papers whose text changed; inputs add to what the store holds.
    """
    from paperscope.pipeline import build, default_progress

    report = build(
        list(paths) or None,
        store,
        lock=lock,
        prune=prune,
        rebuild=rebuild,
        chunk_size=chunk_size,
        progress=default_progress(quiet or as_json or as_jsonl),
        index_type=None if index_type == "auto" else index_type,
        engine=engine,
        backend=backend,
        device=device,
        dtype=dtype,
        workers=workers,
    )
    if not _emit(report.to_dict(), as_json, as_jsonl):
        for example in report.skip_examples:
            click.echo(f"skipped {shown(example)}", err=True)
        for line in report.merges:
            click.echo(shown(line), err=True)
        if report.merged > len(report.merges):
            click.echo(f"... and {report.merged - len(report.merges)} more merges", err=True)
        for line in report.checks:
            click.echo(shown(line), err=True)
        click.echo(shown(report.summary()))
    for warning in report.warnings:
        click.echo(f"paperscope: warning: {shown(warning)}", err=True)


def _print_hits(hits: list[Hit], as_json: bool, header: str, as_jsonl: bool = False) -> None:
    note = getattr(hits, "note", None)
    if _emit([h.to_dict() for h in hits], as_json, as_jsonl):
        if note:
            click.echo(f"paperscope: {shown(note)}", err=True)
        return
    click.echo(header)
    if not hits:
        click.echo(f"  (no results: {shown(note)})" if note else "  (no results)")
        return
    width = shutil.get_terminal_size((100, 20)).columns
    ids = [shown(h.paper.id, 80) for h in hits]
    id_w = max(len(i) for i in ids)
    title_w = max(20, width - id_w - 16)
    title_w = max(20, title_w - 14)
    click.echo(f"{'#':>3}  {'score':>5}  {'dense':>5}  {'lex':>5}  {'id':<{id_w}}  title")
    for h, pid in zip(hits, ids):
        dense = "  n/a" if h.dense is None else f"{h.dense:5.3f}"
        lexical = "  n/a" if h.lexical is None else f"{h.lexical:5.3f}"
        click.echo(f"{h.rank:>3}  {h.score:5.3f}  {dense}  {lexical}  {pid:<{id_w}}  {shown(h.paper.title, title_w)}")
        if h.terms is not None:
            dense = "n/a" if h.dense is None else f"{h.dense:.3f}"
            lexical = "n/a" if h.lexical is None else f"{h.lexical:.3f}"
            terms = shown(", ".join(h.terms) or "(none)")
            click.echo(f"{'':>12}why: dense similarity {dense}, lexical {lexical}; shared terms: {terms}")
    if note:
        click.echo(f"  ({shown(note)})")


def _vectors_line(data: dict[str, Any]) -> str:
    """e.g. 'the base written by g000012 and a delta of 9,780 rows' (paperscope.overlay), or 'written whole'."""
    rows = (data.get("vectors") or {}).get("delta_rows")
    files = data.get("files", {})
    meta = files.get("vectors-base.npy") or files.get("vectors.npy") or {}
    if rows is not None:
        return f"the base written by {meta.get('written_by', '?')} and a delta of {rows:,} rows"
    return "those of " + meta["written_by"] if meta.get("written_by") else "written whole"


def _papers_line(data: dict[str, Any]) -> str:
    """e.g. 'the base written by g000012 and a delta of 9,780 rows' (paperscope.layered_papers)."""
    rows = (data.get("papers") or {}).get("delta_rows", 0)
    base = (data.get("files", {}).get("papers-base.sqlite") or {}).get("written_by")
    return f"the base written by {base or '?'} and a delta of {rows:,} rows"


def _lexical_line(data: dict[str, Any]) -> str:
    """e.g. 'tfidf-sublinear-cosine; postings: the base written by g000012 and a delta of 9,780 rows;
    term rows: the base written by g000012 and a delta of 9,780' (the forward index: paperscope.layered_lexical)."""
    lex = data["lexical"]
    rows = lex.get("delta_rows")
    base = (data.get("files", {}).get("lexical-base.npz") or {}).get("written_by")
    if rows is not None and base:
        postings = f"the base written by {base} and a delta of {rows:,} rows"
    else:
        postings = "written whole" if lex.get("derivation") != "linked" else "those of the previous generation"
    forward = lex.get("forward_rows")
    written_by = (data.get("files", {}).get("lexical-forward.npz") or {}).get("written_by")
    rows_line = (
        f"; term rows: the base written by {written_by or '?'} and a delta of {forward:,}"
        if forward is not None
        else ""
    )
    return f"{lex.get('scoring', 'tf-idf')}; postings: {postings}{rows_line}"


def _index_line(ix: dict[str, Any]) -> str:
    """e.g. 'ivf (IndexIVFPQFastScan, nlist=2000, nprobe=16; recall@10 0.962 on 500 queries; built in 41.2s)'."""
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


@main.command(**example("paperscope show 2203.03466"))
@click.argument("paper")
@store_option
@json_option
def show(paper: str, store: Path | None, as_json: bool, as_jsonl: bool) -> None:
    """Print one paper in full: PAPER is an id or an exact title."""
    import textwrap

    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        p = ex.paper(paper)
    if _emit(p.to_dict(), as_json, as_jsonl):
        return
    width = min(100, shutil.get_terminal_size((100, 20)).columns)
    click.echo(shown(p.title))
    click.echo(f"id: {shown(p.id)}")
    if p.authors:
        extra = (p.authors_count or 0) - len(p.authors)
        more = f" (+{extra} more)" if extra > 0 else ""
        click.echo(shown("authors: " + ", ".join(p.authors) + more))
    for name, value in (
        ("date", p.date),
        ("organisation", p.organisation),
        ("upvotes", p.upvotes),
        ("categories", ", ".join(p.categories)),
        ("sources", ", ".join(p.sources)),
        ("link", p.link),
    ):
        if value not in (None, ""):
            click.echo(f"{name}: {shown(value)}")
    click.echo("")
    click.echo(shown_lines(textwrap.fill(p.abstract, width=width)) if p.abstract else "(no abstract)")


@main.command(**example("paperscope related 2106.09685 -k 5"))
@click.argument("paper")
@store_option
@k_option
@ranking_options
@json_option
def related(paper: str, store: Path | None, k: int, as_json: bool, as_jsonl: bool, **opts: Any) -> None:
    """Papers most related to PAPER (an id or an exact title)."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        target = ex.paper(paper)
        _print_hits(
            ex.related(target.id, k=k, **_ranking_kwargs(opts)),
            as_json,
            f"Related to {shown(target.id)}: {shown(target.title)}",
            as_jsonl,
        )


@main.command(**example('paperscope search "low-rank adaptation of language models" --mode lexical'))
@click.argument("text")
@store_option
@k_option
@ranking_options
@json_option
def search(text: str, store: Path | None, k: int, as_json: bool, as_jsonl: bool, **opts: Any) -> None:
    """Papers nearest to free TEXT (--mode lexical needs no model)."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        _print_hits(ex.search(text, k=k, **_ranking_kwargs(opts)), as_json, f"Nearest to {echo_query(text)}:", as_jsonl)


@main.command(**example("paperscope recommend 2106.09685 2402.09353 --not 2305.14314"))
@click.argument("papers", nargs=-1, required=True)
@click.option(
    "--not", "negative", multiple=True, metavar="PAPER", help="A paper the results should be unlike (repeatable)."
)
@store_option
@k_option
@ranking_options
@json_option
def recommend(
    papers: tuple[str, ...],
    negative: tuple[str, ...],
    store: Path | None,
    k: int,
    as_json: bool,
    as_jsonl: bool,
    **opts: Any,
) -> None:
    """Papers like all of PAPERS (ids or exact titles) and unlike every --not PAPER."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        hits = ex.recommend(list(papers), list(negative), k=k, **_ranking_kwargs(opts))
        # Count what the query used: repeated papers once, and a --not paper that is also a positive is dropped.
        pos = {ex.paper(p).id for p in papers}
        neg_ids = {ex.paper(p).id for p in negative} - pos
        dropped = len({ex.paper(p).id for p in negative} & pos)
        neg = f", unlike {len(neg_ids)}" if neg_ids else ""
        note = f" (--not ignored for {dropped} paper{'s' * (dropped != 1)} also given as positive)" if dropped else ""
        _print_hits(hits, as_json, f"Recommended from {len(pos)} paper{'s' * (len(pos) != 1)}{neg}{note}:", as_jsonl)


@main.command("eval", **example("paperscope eval --tune"))
@click.argument("labels", nargs=-1, type=click.Path(path_type=Path))
@store_option
@click.option(
    "--weight",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    callback=_finite,
    help="Dense share of the hybrid score (default: the tuned one).",
)
@click.option("--tune", is_flag=True, help="Also choose the hybrid weight on the tuning split and print the curve.")
@click.option(
    "--baselines",
    is_flag=True,
    help="Score TF-IDF and its fusions with the store's vectors beside every mode, held-out, with intervals.",
)
@json_option
def eval_(
    labels: tuple[Path, ...],
    store: Path | None,
    weight: float | None,
    tune: bool,
    baselines: bool,
    as_json: bool,
    as_jsonl: bool,
) -> None:
    """Precision@10, recall@10, nDCG@10 and MAP of `related` for every ranking mode.

    LABELS are theme CSVs (title,theme) or query JSON files (query -> relevant titles); with
    none, the labels shipped for the bundled corpus. Held-out queries are never used by --tune.
    """
    from paperscope import evaluate as ev
    from paperscope.explorer import Explorer

    sets = [ev.load_labels(p) for p in labels] or ev.shipped_labels()
    if baselines:
        from paperscope import baselines as bl

        with Explorer(store) as ex:
            rows = bl.compare(ex, sets)
        data = [
            {"labels": r.labels, "ranking": r.name, "queries": r.queries, "ndcg@10": vars(r.ndcg), "map": vars(r.map)}
            for r in rows
        ]
        if not _emit(data, as_json, as_jsonl):
            click.echo(bl.format_rows(rows))
        return
    with Explorer(store) as ex:
        curve = ev.tune(ex, sets) if tune else None
        results = [ex.evaluate(s, weight=weight)[0] for s in sets]
    if as_jsonl:  # one object per label set, then the tuning curve
        _emit(
            [r.to_dict() for r in results]
            + ([{"tuning": [{"weight": w, "ndcg@10": s} for w, s in curve]}] if curve is not None else []),
            False,
            True,
        )
        return
    if as_json:
        out: dict[str, Any] = {"results": [r.to_dict() for r in results]}
        if curve is not None:
            out["tuning"] = [{"weight": w, "ndcg@10": s} for w, s in curve]
        click.echo(dumps(out, indent=2))
        return
    click.echo(shown_lines(ev.format_results(results)))
    if curve is not None:
        best = max(curve, key=lambda ws: ws[1])
        click.echo("\ntuning split, hybrid nDCG@10 by dense weight:")
        click.echo("  " + "  ".join(f"{w:.2f}:{s:.3f}" for w, s in curve))
        click.echo(f"  best weight {best[0]:.2f} (nDCG@10 {best[1]:.3f})")


@main.command(**example("paperscope info --store ~/papers"))
@store_option
@json_option
def info(store: Path | None, as_json: bool, as_jsonl: bool) -> None:
    """What the store holds and how the last build went."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        data = ex.info()
    if _emit(data, as_json, as_jsonl):
        return
    b = data["build"]
    rate = f"{b['texts_per_second']:.1f} texts/s" if b.get("texts_per_second") else "n/a"
    lines = [
        ("store", data["store"]),
        ("generation", f"{data['generation']} (created {data['created_at']})"),
        ("papers", str(data["counts"]["papers"]) + (f" ({_papers_line(data)})" if data.get("papers") else "")),
        (
            "model",
            f"{data['model']['name']} (backend {(data['model'].get('lock') or {}).get('backend', 'custom')}, "
            f"fingerprint {data['model']['fingerprint']}, dim {data['model']['dimension']})",
        ),
        ("vectors", _vectors_line(data)),
        ("index", _index_line(data["index"])),
        *([("lexical", _lexical_line(data))] if data.get("lexical") else []),
        (
            "last build",
            f"{b['added']} added, {b['changed']} changed, {b['updated']} metadata-only, "
            f"{b['unchanged']} unchanged, {b['removed']} removed; embedded {b['embedded']} "
            f"in {b['seconds']:.1f}s ({rate})",
        ),
        ("embedded on", _devices_line(data)),
        ("paperscope", data["paperscope_version"]),
    ]
    for key, value in lines:
        click.echo(f"{key:>11}  {shown(value)}")


def _devices_line(data: dict[str, Any]) -> str:
    """Which device and dtype made this generation's new vectors; how a CPU-only backend gets the GPU."""
    from paperscope.embed.device import GPU_BACKENDS, describe

    line = describe(data["build"].get("devices"))
    backend = (data["model"].get("lock") or {}).get("backend")
    if backend and backend not in GPU_BACKENDS:
        line += (
            f"; backend {backend} runs on the CPU: to embed on a GPU, "
            "paperscope index --backend torch --rebuild --device cuda"
        )
    return line


@main.command("verify", **example("paperscope verify --store ~/papers"))
@store_option
@json_option
def verify_command(store: Path | None, as_json: bool, as_jsonl: bool) -> None:
    """Check every store file against the digest in its manifest (exit 1 if any is damaged)."""
    from paperscope.store import Store
    from paperscope.verify import verify

    report = verify(Store(store))
    if as_jsonl:  # one object per checked file
        _emit([vars(f) for f in report.findings], False, True)
    elif as_json:
        click.echo(dumps(report.to_dict(), indent=2))
    else:
        for f in report.findings:
            click.echo(_one_line(f"{'ok' if f.ok else 'DAMAGED':>7}  {f.path}: {f.detail}"))
        bad = len(report.damaged)
        click.echo(f"{shown(report.store)}: " + ("OK" if report.ok else f"{bad} problem{'s' * (bad != 1)} found"))
    if not report.ok:
        sys.exit(1)


@main.command("map", **example("paperscope map --topics 40 --out ./map"))
@store_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for map.png, map.html and topics.json (default: STORE/map).",
)
@click.option("--refit", is_flag=True, help="Fit afresh instead of keeping the previous layout.")
@click.option(
    "--topics",
    "fine_topics",
    type=click.IntRange(min=2),
    default=None,
    help="Number of fine topics (default: about 1.8 sqrt(papers)).",
)
@click.option(
    "--themes",
    "coarse_topics",
    type=click.IntRange(min=1),
    default=None,
    help="Number of coarse themes (default: about topics / 2.5).",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=42,
    show_default=True,
    help="Random seed for UMAP and k-means (0 to 2**32-1).",
)
@click.option(
    "--fit-sample",
    "max_fit",
    type=click.IntRange(min=10),
    default=MAP_MAX_FIT,
    show_default=True,
    help="Fit UMAP and the topics on at most this many papers (a fixed sample); "
    "the rest are placed among their nearest fitted papers.",
)
@click.option(
    "--wait",
    "lock_wait",
    type=click.FloatRange(0, 86_400),
    default=0,
    show_default=True,
    callback=_finite,
    help="Seconds to wait for a running index to finish before refusing (checked before any work).",
)
@click.option("--open", "open_page", is_flag=True, help="Open map.html in the web browser afterwards.")
@json_option
def map_command(
    store: Path | None,
    out: Path | None,
    refit: bool,
    fine_topics: int | None,
    coarse_topics: int | None,
    seed: int,
    max_fit: int,
    lock_wait: float,
    open_page: bool,
    as_json: bool,
    as_jsonl: bool,
) -> None:
    """Draw the topic map: map.png, a self-contained map.html and topics.json."""
    from paperscope.explorer import Explorer
    from paperscope.map import MapParams

    params = MapParams(seed=seed, fine_topics=fine_topics, coarse_topics=coarse_topics, max_fit=max_fit)
    with Explorer(store) as ex:
        tm = ex.topic_map(out, params=params, refit=refit, lock_wait=lock_wait)
    if as_jsonl:  # one object per topic
        _emit([t.to_dict() for t in tm.topics], False, True)
        return
    if as_json:
        click.echo(dumps({"stats": tm.stats, "topics": [t.to_dict() for t in tm.topics]}, indent=2))
        if open_page:
            _open_page(Path(tm.stats["outputs"]["html"]))
        return
    s = tm.stats
    how = (
        "kept from the saved map, up to date"
        if s.get("cached")
        else "previous layout kept"
        if s.get("reused_fit")
        else "fitted"
    )
    click.echo(
        f"map of {len(tm)} papers ({how}; {s['placed']} newly placed): {s['topics']['theme']} themes, "
        f"{s['topics']['topic']} topics, {s['low_confidence']} papers low-confidence; {s['seconds']:.1f}s"
    )
    for t in sorted((t for t in tm.topics if t.level == 1), key=lambda t: -t.size):
        click.echo(f"  topic {t.id:>3}  {t.size:>5}  {shown(t.label)}")
    for kind, path in s["outputs"].items():
        click.echo(f"{kind:>7}: {shown(path)}")
    if open_page:
        _open_page(Path(s["outputs"]["html"]))


def _open_page(path: Path) -> None:
    """Open the page in the user's browser (webbrowser: the system's default, or $BROWSER)."""
    import webbrowser

    url = path.resolve().as_uri()
    if not webbrowser.open(url):
        click.echo(f"paperscope: no browser could be started; open {url}", err=True)


@main.command(**example("paperscope serve --store ~/papers --open"))
@store_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; anything but the loopback exposes the store to the network.",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser once ready.")
@click.option(
    "--preload/--no-preload",
    default=True,
    show_default=True,
    help="Map the store's query files into memory after start (steadier latency on a large store; "
    "their pages then count in the server's RSS).",
)
def serve(store: Path | None, host: str, port: int, open_browser: bool, preload: bool) -> None:
    """Serve the map page with search, related papers and a basket, and a JSON API (read-only).

    Needs the serve extra: pip install "paperscope[serve]". See docs/serve.md for the API.
    """
    from paperscope.serve import serve as run_server  # one line naming the extra when it is missing

    run_server(store, host=host, port=port, open_browser=open_browser, preload=preload)


def _presets() -> tuple[str, ...]:
    from paperscope.embed.presets import PRESETS

    return tuple(PRESETS)


@main.group(**example("paperscope model pin ./my-model --lock models.lock"))
def model() -> None:
    """The pinned embedding model (models.lock)."""


@model.command("pin", **example("paperscope model pin hub:sentence-transformers/all-MiniLM-L6-v2"))
@click.argument("model_ref")
@click.option(
    "--lock",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("models.lock"),
    show_default=True,
    help="Lock file to rewrite.",
)
@click.option("--template", default=None, help="Text template, e.g. '{title}. {abstract}'.")
@click.option("--revision", default="main", show_default=True, help="Hub revision (hub models only).")
def pin_model(model_ref: str, lock: Path, template: str | None, revision: str) -> None:
    """Pin MODEL_REF (a local sentence-transformers directory, a preset such as mpnet, or hub:ORG/NAME).

    Preset mpnet (all-mpnet-base-v2, see docs/ranking.md): pip install 'paperscope[mpnet]', then
    paperscope model pin mpnet --lock mpnet.lock && paperscope index --lock mpnet.lock --rebuild
    """
    from paperscope.embed.lock import pin

    if model_ref.startswith("hub:"):
        from huggingface_hub import snapshot_download  # the user asked for a hub model

        repo = model_ref.removeprefix("hub:")
        path = Path(snapshot_download(repo, revision=revision))
        source = {"kind": "hub", "repo": repo, "revision": path.name}
        name = repo
    elif model_ref in _presets():
        from paperscope.embed.presets import assemble  # e.g. mpnet: built from registry packages

        path = assemble(model_ref)
        source, name = {"kind": "directory", "path": str(path)}, path.name
    else:
        path = Path(model_ref).expanduser().resolve()
        source, name = {"kind": "directory", "path": str(path)}, path.name
    new = pin(path, source, name, template=template)
    lock.write_text(new.to_json(), encoding="utf-8")
    click.echo(
        f"pinned {shown(name)} ({len(new.files)} files, dim {new.dimension}, fingerprint {new.fingerprint}) in {shown(lock)}"
    )


if __name__ == "__main__":
    main()
