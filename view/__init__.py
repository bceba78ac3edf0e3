"""``palaestra view``: one local web page over run folders.

Results tables of evals and self-training runs, episodes as chats with their loss
marks, two runs compared with paired tests, search trees with their splices, and
play in the browser against a running ``palaestra serve``. The page is plain
HTML/CSS/JS shipped in ``static/`` (no build step, no CDN); the JSON API beside
it reads the run folders lazily (see :mod:`palaestra.view.catalog`).
"""

from __future__ import annotations

from palaestra.view.app import create_view_app
from palaestra.view.catalog import Catalog, FileEntry, RunEntry

__all__ = ["Catalog", "FileEntry", "RunEntry", "create_view_app"]
