#!/bin/bash
# Re-index runs of one checkout on a big store: the 1% edit in place and its revert, ROUNDS times.
#
#   bash benchmarks/reindex_runs.sh DIR CHECKOUT TAG [ROUNDS] [merge | vectors-ab | papers-ab | rows-whole]
#
# As benchmarks/reindex_pairs.sh (DIR holds `store`, arxiv-N.jsonl.gz and arxiv-N-edit1pct.jsonl.gz;
# CHECKOUT runs with PYTHONPATH=CHECKOUT/src), for one code only: a store whose live generation
# holds a postings delta (round 15) cannot be read by code older than it, so old and new are run
# in turn, not interleaved. With "merge", impact.DELTA_MAX is set to 0 before the run: the
# postings are merged whole, as before round 15 (the first such run after deltas writes a new base).
# With "vectors-ab", each edit run sets overlay.DELTA_MAX to 0 (vectors.npy written whole, as before
# round 19) and each revert run keeps it (the vectors a base and a delta): the two alternate.
# With "papers-ab", the same for the papers table: each edit run sets layered_papers.DELTA_MAX to 0
# (papers.sqlite written whole: over a delta, the base copied and the delta applied, then this
# run's rows, as before round 20) and each revert run keeps it (a delta over the base).
# With "rows-whole", layered_lexical.ENABLED is False in every run: the lexical forward index is
# written whole, as before round 21 (a run over a layered one writes it whole from it first).
# Writes DIR/pairs/TAG-{edit,revert}-I.{time,json,err,load}; .time is "wall user sys maxrss_kb".
set -euo pipefail
DIR=$(cd "$1" && pwd); CODE=$(cd "$2" && pwd); TAG=$3; ROUNDS=${4:-2}; MODE=${5:-}
cd "$DIR"
E=$(ls arxiv-*-edit1pct.jsonl.gz | head -1); C=${E%-edit1pct.jsonl.gz}.jsonl.gz
OUT=$DIR/pairs; mkdir -p "$OUT"
pre=""; [ "$MODE" = merge ] && pre="import paperscope.impact as i; i.DELTA_MAX = 0.0; "
[ "$MODE" = rows-whole ] && pre="import paperscope.layered_lexical as l; l.ENABLED = False; "
run() {  # NAME INPUT
  local pre=$pre
  [ "$MODE" = vectors-ab ] && [[ "$1" == *-edit-* ]] && pre="import paperscope.overlay as o; o.DELTA_MAX = 0.0; "
  [ "$MODE" = papers-ab ] && [[ "$1" == *-edit-* ]] && pre="import paperscope.layered_papers as p; p.DELTA_MAX = 0.0; "
  uptime > "$OUT/$1.load"
  PYTHONPATH=$CODE/src /usr/bin/time -f "%e %U %S %M" -o "$OUT/$1.time" \
    python -c "${pre}import sys; from paperscope.cli import main; sys.argv[0] = 'paperscope'; main()" \
    index "$2" --store store --json > "$OUT/$1.json" 2> "$OUT/$1.err"
  uptime >> "$OUT/$1.load"
}
for i in $(seq "$ROUNDS"); do
  mv "$C" "$C.orig" && cp "$E" "$C"
  run "$TAG-edit-$i" "$C" || true
  mv "$C.orig" "$C"
  run "$TAG-revert-$i" "$C"
done
for f in "$OUT"/"$TAG"-*.time; do echo "$(basename "$f" .time) $(cat "$f")"; done
