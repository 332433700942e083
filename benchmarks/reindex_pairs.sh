#!/bin/bash
# Paired re-index runs on a big store: new code against old, whole `paperscope index` processes.
#
#   bash benchmarks/reindex_pairs.sh DIR NEW_CHECKOUT OLD_CHECKOUT [in-place|new-name] [ROUNDS]
#
# DIR holds `store` and the corpus files of benchmarks/scale_run.py: arxiv-N.jsonl.gz (C) and
# arxiv-N-edit1pct.jsonl.gz (E); N is found from their names. Each checkout runs with
# PYTHONPATH=CHECKOUT/src. Per round, for new then old:
#   in-place: E's bytes copied over C's path and indexed ("edit"), then C put back and indexed
#             ("revert"): a snapshot refreshed in place (scale_run's `edit` step, both ways).
#   new-name: E, then C, each hard-linked under a name the store has not seen and indexed: a new
#             month's snapshot under a new file name.
# Writes DIR/pairs/TAG.{time,json,err,load}; TAG.time is "wall user sys maxrss_kb" (/usr/bin/time).
# The store is changed by every run (as a user's would be): give it one you can spare.
set -euo pipefail
DIR=$(cd "$1" && pwd); NEW=$(cd "$2" && pwd); OLD=$(cd "$3" && pwd); MODE=${4:-in-place}; ROUNDS=${5:-2}
cd "$DIR"
E=$(ls arxiv-*-edit1pct.jsonl.gz | head -1); C=${E%-edit1pct.jsonl.gz}.jsonl.gz
OUT=$DIR/pairs; mkdir -p "$OUT"
run() {  # TAG CHECKOUT INPUT
  uptime > "$OUT/$1.load"
  PYTHONPATH=$2/src /usr/bin/time -f "%e %U %S %M" -o "$OUT/$1.time" \
    python -c "import sys; from paperscope.cli import main; sys.argv[0] = 'paperscope'; main()" \
    index "$3" --store store --json > "$OUT/$1.json" 2> "$OUT/$1.err"
  uptime >> "$OUT/$1.load"
}
for i in $(seq "$ROUNDS"); do
  for side in new old; do
    src=$NEW; [ "$side" = old ] && src=$OLD
    if [ "$MODE" = in-place ]; then
      mv "$C" "$C.orig" && cp "$E" "$C"
      run "$side-edit-$i" "$src" "$C" || true
      mv "$C.orig" "$C"
      run "$side-revert-$i" "$src" "$C"
    else
      ln -f "$E" "snap-$side-$i-e.jsonl.gz"; run "$side-edit-$i" "$src" "snap-$side-$i-e.jsonl.gz"
      ln -f "$C" "snap-$side-$i-c.jsonl.gz"; run "$side-revert-$i" "$src" "snap-$side-$i-c.jsonl.gz"
      rm -f "snap-$side-$i-e.jsonl.gz" "snap-$side-$i-c.jsonl.gz"
    fi
  done
done
for f in "$OUT"/*.time; do echo "$(basename "$f" .time) $(cat "$f")"; done
