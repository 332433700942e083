"""Stage 5: draw a TopicMap as a static PNG, a self-contained HTML page, and topics.json.

Renderers take a finished :class:`~paperscope.map.TopicMap` and never fit anything.
"""

from paperscope.render.html import write_html
from paperscope.render.outputs import write_outputs
from paperscope.render.png import write_png
from paperscope.render.topics_json import topics_document, write_topics_json

__all__ = ["topics_document", "write_html", "write_outputs", "write_png", "write_topics_json"]
