"""Stage 4: the topic map (UMAP projection, two-level topics, c-TF-IDF labels)."""

from paperscope.map.topicmap import LEVELS, MapParams, Topic, TopicMap, compute_map, from_record, to_record

__all__ = ["LEVELS", "MapParams", "Topic", "TopicMap", "compute_map", "from_record", "to_record"]
