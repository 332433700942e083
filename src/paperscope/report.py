"""What a build did (:class:`BuildReport`): below both the pipeline and the embedding engines that fill it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BuildReport:
    """What a run did. ``embedded`` counts texts sent to the model in this run."""

    store: str
    generation: str | None
    papers: int = 0
    added: int = 0
    changed: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    kept_not_in_inputs: int = 0
    embedded: int = 0
    resumed: int = 0
    tokenised: int = 0
    entries_read: int = 0
    # Entries whose input line is byte for byte the one the previous generation read: not parsed.
    entries_unchanged: int = 0
    rows_skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)
    # Two readings with different text that got one id (same id, or titles alike): one line each.
    merged: int = 0
    merges: list[str] = field(default_factory=list)
    # Problems after the commit (the new generation is live): reported, never a failure.
    warnings: list[str] = field(default_factory=list)
    # Drift checks this run made (IVF centroids, carried idf): one line each, with the figures and
    # the decision; the figures are in the manifest ("index", "lexical" blocks).
    checks: list[str] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    model_load_seconds: float = 0.0
    nothing_to_do: bool = False
    # The inputs' bytes equal those the live generation was built from: nothing was parsed.
    inputs_unchanged: bool = False
    # Files of the new generation carried from the previous one (hard links, not rewritten), and
    # the bytes of the files this run wrote (the work a re-run did on disk).
    carried: list[str] = field(default_factory=list)
    bytes_written: int = 0
    # Where this run embedded (set by the engine when the model loads) and, over this generation's new
    # vectors (resumed ones included), which device and dtype made how many: [{device, dtype, count}].
    device: str | None = None
    dtype: str | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    # Texts embedded in this run by each Ray node (node id -> texts); empty with the local engine.
    nodes: dict[str, int] = field(default_factory=dict)

    @property
    def texts_per_second(self) -> float | None:
        return self.embedded / self.embed_seconds if self.embedded and self.embed_seconds > 0 else None

    def summary(self) -> str:
        """One line for the end of ``paperscope index``."""
        rate = f", {self.texts_per_second:.1f} texts/s" if self.texts_per_second else ""
        head = "nothing changed" if self.nothing_to_do else f"generation {self.generation}"
        skipped = f", {self.rows_skipped} rows skipped" if self.rows_skipped else ""
        skipped += f", {self.merged} merged with another reading of a different text" if self.merged else ""
        return (
            f"{head}: {self.papers} papers ({self.added} added, {self.changed} changed, {self.updated} "
            f"metadata-only, {self.unchanged} unchanged, {self.removed} removed{skipped}); "
            f"embedded {self.embedded} ({self.resumed} resumed from checkpoint) in {self.seconds:.1f}s{rate}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "texts_per_second": self.texts_per_second}
