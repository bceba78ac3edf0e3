"""The shipped author/paper/citation graph of ``palaestra/Academia-v0`` and its lookups.

``academia.json.gz`` (~150 KB) is made by ``tools/make_academia_data.py`` (which
says how); this module only reads it, once per process, into :class:`Graph`.
Authors are ``A0000``..., papers ``P0000``...: an id's number is its index.
"""

from __future__ import annotations

import bisect
import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "DATA_FILE",
    "Author",
    "Graph",
    "Paper",
    "author_id",
    "load_graph",
    "normalize",
    "paper_id",
]

DATA_FILE = "academia.json.gz"

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def normalize(text: str) -> str:
    """``text`` lowercased with every run of non-alphanumerics made one space (for matching)."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def author_id(index: int) -> str:
    """The id of the author at ``index``."""
    return f"A{index:04d}"


def paper_id(index: int) -> str:
    """The id of the paper at ``index``."""
    return f"P{index:04d}"


@dataclass(frozen=True)
class Author:
    """One author: name, affiliation, and papers (indices, oldest first)."""

    index: int
    name: str
    affiliation: str
    country: str
    papers: tuple[int, ...]

    @property
    def id(self) -> str:
        """``A`` and the index in four digits."""
        return author_id(self.index)


@dataclass(frozen=True)
class Paper:
    """One paper: title, year, venue, authors in order, and citation edges (indices)."""

    index: int
    title: str
    year: int
    venue: str
    authors: tuple[int, ...]
    references: tuple[int, ...]
    cited_by: tuple[int, ...]

    @property
    def id(self) -> str:
        """``P`` and the index in four digits."""
        return paper_id(self.index)


class Graph:
    """The whole academic graph with the indices the tools and the task makers need."""

    def __init__(self, data: dict) -> None:
        institutions = [tuple(i) for i in data["institutions"]]
        raw_papers = data["papers"]
        cited_by: list[list[int]] = [[] for _ in raw_papers]
        for index, (_, _, _, _, refs) in enumerate(raw_papers):
            for ref in refs:
                cited_by[ref].append(index)
        self.papers: tuple[Paper, ...] = tuple(
            Paper(i, title, year, venue, tuple(authors), tuple(refs), tuple(cited_by[i]))
            for i, (title, year, venue, authors, refs) in enumerate(raw_papers)
        )
        written: list[list[int]] = [[] for _ in data["authors"]]
        for paper in self.papers:
            for a in paper.authors:
                written[a].append(paper.index)
        self.authors: tuple[Author, ...] = tuple(
            Author(
                i,
                name,
                institutions[inst][0],
                institutions[inst][1],
                tuple(sorted(written[i], key=lambda p: (self.papers[p].year, p))),
            )
            for i, (name, inst) in enumerate(data["authors"])
        )
        self.venues: tuple[str, ...] = tuple(sorted({p.venue for p in self.papers}))
        self._author_search = _WordIndex([a.name for a in self.authors])
        self._title_search = _WordIndex([p.title for p in self.papers])

    # -- lookups by id ---------------------------------------------------------------

    def author(self, ident: str) -> Author | None:
        """The author with id ``ident`` (``A0123``; case and spaces ignored), or None."""
        index = _index(ident, "A", len(self.authors))
        return None if index is None else self.authors[index]

    def paper(self, ident: str) -> Paper | None:
        """The paper with id ``ident`` (``P0123``; case and spaces ignored), or None."""
        index = _index(ident, "P", len(self.papers))
        return None if index is None else self.papers[index]

    # -- searches --------------------------------------------------------------------

    def search_authors(self, query: str) -> list[Author]:
        """Authors whose name holds every word of ``query``; an exact name first."""
        return [self.authors[i] for i in self._author_search.find(query)]

    def search_papers(self, query: str) -> list[Paper]:
        """Papers whose title holds every word of ``query``; an exact title first."""
        return [self.papers[i] for i in self._title_search.find(query)]

    # -- derived facts -----------------------------------------------------------------

    def coauthors(self, author: int) -> Counter[int]:
        """Co-author index -> number of papers written with ``author``."""
        counts: Counter[int] = Counter()
        for p in self.authors[author].papers:
            counts.update(a for a in self.papers[p].authors if a != author)
        return counts


def _index(ident: str, prefix: str, size: int) -> int | None:
    text = "".join(ident.split()).upper()
    if len(text) < 2 or text[0] != prefix or not text[1:].isdigit():
        return None
    index = int(text[1:])
    return index if index < size else None


class _WordIndex:
    """Word search over texts: an inverted index, so a search costs microseconds, not a scan."""

    def __init__(self, texts: list[str]) -> None:
        self._normal = [normalize(t) for t in texts]
        self._postings: dict[str, set[int]] = {}
        for i, text in enumerate(self._normal):
            for word in text.split():
                self._postings.setdefault(word, set()).add(i)
        self._vocabulary = sorted(self._postings)

    def find(self, query: str) -> list[int]:
        """Indices of the texts holding every word of ``query``, an exact text first.

        Failing that, the last word counts as a prefix, so "Transl" finds "Translation"
        (as search boxes do).
        """
        words = normalize(query).split()
        if not words:
            return []
        hits = self._having(words)
        if not hits:
            *whole, last = words
            start = bisect.bisect_left(self._vocabulary, last)
            grown = set()
            for word in self._vocabulary[start:]:
                if not word.startswith(last):
                    break
                grown |= self._postings[word]
            hits = self._having(whole) & grown if whole else grown
        wanted = " ".join(words)
        return sorted(hits, key=lambda i: (self._normal[i] != wanted, i))

    def _having(self, words: list[str]) -> set[int]:
        sets = [self._postings.get(w, set()) for w in words]
        return set.intersection(*sets) if sets else set()


@cache
def load_graph() -> Graph:
    """The shipped graph (read once per process)."""
    raw = resources.files("palaestra.envs.academia").joinpath(DATA_FILE).read_bytes()
    return Graph(json.loads(gzip.decompress(raw)))
