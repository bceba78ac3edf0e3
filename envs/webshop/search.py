"""The shop's search engine: one BM25 index (``bm25s``) over the catalogue, built once.

The index covers each product's title, features and description. It is built
the first time a process needs it and saved under the cache folder:

* ``$PALAESTRA_CACHE/webshop/<version>/`` if that variable is set, else
* ``~/.cache/palaestra/webshop/<version>/`` (``$XDG_CACHE_HOME`` respected),

where ``<version>`` names the catalogue, a digest of its text and the ``bm25s``
release. It is written to a private folder and renamed into place (atomic), so
processes sharing a cache never read half an index. Every later load maps the
saved arrays read-only (``mmap``): one copy per process, shared by all its
sessions, and one copy in the page cache for all processes on the machine.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from palaestra.envs.webshop.generator import CATALOGUE_SEED, CATALOGUE_SIZE, catalogue
from palaestra.files import ROOT_CACHE_ENV, cache_root

__all__ = ["MAX_RESULTS", "ROOT_CACHE_ENV", "BuildStats", "SearchIndex", "cache_dir", "index"]

log = logging.getLogger(__name__)

MAX_RESULTS = 50
"""Results kept per search, as in WebShop: five pages of ten."""


@dataclass(frozen=True)
class BuildStats:
    """How this process got its index.

    Attributes:
        built: True when this process built it (else it was loaded from the cache).
        seconds: Time to build and save it, or to load it.
        path: The cache folder it lives in, or None when the cache could not be
            written (it is then held in memory by this process alone).
    """

    built: bool
    seconds: float
    path: Path | None


class SearchIndex:
    """BM25 over the catalogue; safe to share between threads (it is read-only).

    Attributes:
        stats: How the index was obtained (built or loaded, and how long it took).
    """

    def __init__(self, retriever: bm25s.BM25, stats: BuildStats) -> None:
        self._retriever = retriever
        self.stats = stats

    def search(self, query: str, limit: int = MAX_RESULTS) -> list[int]:
        """The catalogue indices of the best ``limit`` products for ``query``, best first.

        Products that share no word with the query are left out; equal scores keep
        catalogue order, so a query always gives the same list.
        """
        tokens = _tokens(query)
        ids = self._retriever.get_tokens_ids(tokens)
        if not ids:
            return []
        scores = self._retriever.get_scores(ids)
        order = np.argsort(-scores, kind="stable")[:limit]
        return [int(i) for i in order if scores[i] > 0]


def _tokens(text: str) -> list[str]:
    """Lowercase word tokens without English stop words, as the index was built with."""
    out = bm25s.tokenize([text], stopwords="en", return_ids=False, show_progress=False)
    return list(out[0])


@functools.cache
def _version() -> str:
    """Names the catalogue (a digest of its text) and the bm25s release; hashed once."""
    digest = hashlib.sha256()
    for product in catalogue():
        digest.update(product.asin.encode())
        digest.update(product.text().encode())
    catalogue_id = f"{CATALOGUE_SEED}-{CATALOGUE_SIZE}-{digest.hexdigest()[:12]}"
    return f"v0-{catalogue_id}-bm25s{bm25s.__version__}"


def cache_dir() -> Path:
    """The folder of this catalogue's index (see the module docstring); not created."""
    return cache_root() / "webshop" / _version()


def _build() -> bm25s.BM25:
    corpus = [product.text() for product in catalogue()]
    tokens = bm25s.tokenize(corpus, stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    return retriever


def _save(retriever: bm25s.BM25, path: Path) -> bool:
    """Save into ``path`` atomically; False (and a warning) when the cache is not writable."""
    private = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix=".building-", dir=path.parent))
        retriever.save(str(private), show_progress=False)
        try:
            private.rename(path)
        except OSError:
            if not path.is_dir():  # not another process winning the race: a real error
                raise
        return True
    except OSError as error:
        log.warning("cannot cache the WebShop index in %s (%s); keeping it in memory", path, error)
        return False
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


_LOCK = threading.Lock()
_INDEX: dict[Path, SearchIndex] = {}


def index() -> SearchIndex:
    """This process's shared index: loaded from the cache, or built and cached first."""
    path = cache_dir()
    with _LOCK:
        found = _INDEX.get(path)
        if found is None:
            started = time.perf_counter()
            built = not path.is_dir()
            retriever = _build() if built else None
            cached = retriever is None or _save(retriever, path)
            if cached:  # mapped from the file: one copy in the page cache for every process
                retriever = bm25s.BM25.load(str(path), mmap=True)
            seconds = time.perf_counter() - started
            stats = BuildStats(built, seconds, path if cached else None)
            found = _INDEX[path] = SearchIndex(retriever, stats)
        return found
