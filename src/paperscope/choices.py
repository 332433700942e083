"""The library's fixed choices, in a module light enough for ``paperscope --help`` (no FAISS, no numpy).

Each is re-exported where it belongs (``rank.MODES``, ``index.INDEX_TYPES``, ``embed.engines.ENGINES``,
``pipeline.CHUNK_SIZE``); the CLI imports them from here instead of keeping copies. The embedding
backends are listed by ``paperscope.embed.registry.BACKENDS``.
"""

MODES = ("dense", "lexical", "hybrid")
INDEX_TYPES = ("flat", "ivf", "hnsw")
ENGINES = ("local", "ray")
DEFAULT_ENGINE = "local"
# Texts embedded between two checkpoints of a build.
CHUNK_SIZE = 256
DTYPES = ("auto", "float32", "float16", "bfloat16")  # --dtype of index (embed/device.py)
# The map fits UMAP and its topics on at most this many papers (map.topicmap.MapParams.max_fit).
MAP_MAX_FIT = 50_000
