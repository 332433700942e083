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
from paperscope.paper import Hit

EXIT_USER_ERROR = 2

store_option = click.option("--store", type=click.Path(file_okay=False, path_type=Path), default=None,
                            help="Store directory (default: $PAPERSCOPE_HOME or ~/.local/share/paperscope).")
k_option = click.option("-k", "k", type=click.IntRange(min=1, max=100_000), default=10, show_default=True,
                        help="Number of results.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


class _Group(click.Group):
    """Turns every user error (library errors, bad options) into one line and exit code 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as e:
            where = f" (in {e.ctx.command_path})" if e.ctx else ""
            click.echo(f"paperscope: error: {e.format_message()}{where}", err=True)
        except (PaperscopeError, ValueError) as e:
            click.echo(f"paperscope: error: {e}", err=True)
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@json_option
def index(paths: tuple[Path, ...], store: Path | None, lock: Path | None, prune: bool, rebuild: bool,
          chunk_size: int, index_type: str, engine: str, quiet: bool, as_json: bool) -> None:
    """Index PATHS (files or directories; default: the bundled corpus) into the store.

    Re-running only embeds papers whose text changed; inputs add to what the store holds.
    """
    from paperscope.pipeline import build, default_progress

    report = build(list(paths) or None, store, lock=lock, prune=prune, rebuild=rebuild,
                   chunk_size=chunk_size, progress=default_progress(quiet or as_json),
                   index_type=None if index_type == "auto" else index_type, engine=engine)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for example in report.skip_examples:
            click.echo(f"skipped {example}", err=True)
        click.echo(report.summary())


def _print_hits(hits: list[Hit], as_json: bool, header: str) -> None:
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
        return
    click.echo(header)
    if not hits:
        click.echo("  (no results)")
        return
    width = shutil.get_terminal_size((100, 20)).columns
    id_w = max(len(h.paper.id) for h in hits)
    title_w = max(20, width - id_w - 16)
    click.echo(f"{'#':>3}  {'score':>5}  {'id':<{id_w}}  title")
    for h in hits:
        title = h.paper.title if len(h.paper.title) <= title_w else h.paper.title[: title_w - 1] + "…"
        click.echo(f"{h.rank:>3}  {h.score:5.3f}  {h.paper.id:<{id_w}}  {title}")


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
@k_option
@json_option
def related(paper: str, store: Path | None, k: int, as_json: bool) -> None:
    """Papers most related to PAPER (an id or an exact title)."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        target = ex.paper(paper)
        _print_hits(ex.related(target.id, k=k), as_json, f"Related to {target.id}: {target.title}")


@main.command()
@click.argument("text")
@store_option
@k_option
@json_option
def search(text: str, store: Path | None, k: int, as_json: bool) -> None:
    """Papers nearest to free TEXT."""
    from paperscope.explorer import Explorer

    with Explorer(store) as ex:
        _print_hits(ex.search(text, k=k), as_json, f"Nearest to {text!r}:")


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
