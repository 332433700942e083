"""The two levels of a topic map, coarse first (a module of its own: both the map and its notebook views use it)."""

LEVELS = ("theme", "topic")  # level 0: coarse themes, level 1: fine topics
