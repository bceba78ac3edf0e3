"""Build the word lists of ``palaestra/Wordle-v0`` (run once; the outputs are committed).

The env reads only the files this script writes into ``envs/wordle/``:

``guesses.txt``
    Every accepted guess: the lowercase, a-z only, 5-letter entries of SCOWL's
    size-70 American English list (Debian package ``wamerican-huge``), less
    Roman numerals, plus every answer.
``answers.txt``
    The secret words: the 5-letter words of SCOWL's size-50 American English
    list (Debian package ``wamerican``) whose Zipf frequency in English is at
    least ``--min-zipf`` according to ``wordfreq``, less inflected forms (plurals
    and third persons such as ``cakes``/``boxes``/``flies``, past tenses such as
    ``baked``/``cried``) whose stem is itself in the list, less a hand-made list
    of abbreviations, slang spellings, words mostly used as names, and slurs or
    vulgar words (:data:`NOT_ANSWERS`), as the original Wordle did.
``LICENSE.txt``
    The SCOWL copyright notice (which its licence requires in every copy) and the
    attribution of the frequency data.

Sources and licences:

* SCOWL (Spell Checker Oriented Word Lists) by Kevin Atkinson, via Debian's
  ``wamerican``/``wamerican-huge`` 2020.12.07: a permissive MIT-like licence
  ("permission to use, copy, modify, distribute and sell ... provided that the
  above copyright notice appears in all copies"); its parts are public domain or
  under similar notices, all reproduced in ``LICENSE.txt``.
* ``wordfreq`` 3.1 by Robyn Speer (code Apache-2.0, data CC BY-SA 4.0), used only
  to choose which SCOWL words are common enough to be answers; no frequency
  figure is shipped.

Usage (``wordfreq`` goes into a throwaway venv, not the project's)::

    apt-get update && apt-get install -y wamerican wamerican-huge
    python3 -m venv /tmp/wf && /tmp/wf/bin/pip install wordfreq
    /tmp/wf/bin/python tools/make_wordle_words.py lists
    .venv/bin/python tools/make_wordle_words.py opening   # prints the expert's opening

``opening`` searches the whole guess list for the guess that minimises the
expected number of answers left, with the env's own solver; its result is the
constant ``OPENING`` in ``envs/wordle/solver.py``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "envs" / "wordle"
SMALL_DICT = Path("/usr/share/dict/american-english")  # wamerican: SCOWL size 50
HUGE_DICT = Path("/usr/share/dict/american-english-huge")  # wamerican-huge: SCOWL size 70
SCOWL_COPYRIGHT = Path("/usr/share/doc/wamerican-huge/copyright")

FIVE = re.compile(r"^[a-z]{5}$")
ROMAN = re.compile(r"^m{0,4}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})$")

#: Common words that still make poor answers (they stay valid guesses).
NOT_ANSWERS: frozenset[str] = frozenset(
    # abbreviations, clippings and variant spellings
    "admin altho aline assoc calif carbs enrol illus intel intro multi promo synch trans "
    # slang spellings
    "dunno gimme gonna gotta kinda lemme sorta wanna "
    # frequent mostly as names or brands
    "babel bible billy bobby chile curie dolly fanny harry hogan japan jimmy maria "
    "mecca patsy patty peter randy roger roman sally smurf sonny terry waldo yahoo "
    # slurs, vulgar or anatomical words, and words Wordle's editors dropped
    "bimbo bitch booby boner butch chink dicky enema fecal feces gipsy gypsy horny "
    "hymen kinky labia lynch nigga panty penis porno prick pubic pussy queer semen "
    "sissy spank sperm spunk squaw twink vulva welch welsh wench whore".split()
)


def read_words(path: Path) -> set[str]:
    """Read a one-word-a-line dictionary file."""
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}


def inflection_of(word: str, stems: set[str]) -> str | None:
    """Name the inflection ``word`` is of a word in ``stems``, or ``None``.

    Catches regular plurals and third persons (``cakes``, ``boxes``, ``flies``)
    and regular past tenses (``baked``, ``aimed``, ``cried``, ``upped``), but not
    words that merely look like them (``bless``, ``bonus``, ``breed``).
    """
    if word.endswith("s") and not word.endswith("ss"):
        if word[:-1] in stems:
            return "plural"
        if word.endswith("es") and word[:-2] in stems:
            return "plural"
        if word.endswith("ies") and word[:-3] + "y" in stems:
            return "plural"
    if word.endswith("ed") and not word.endswith("eed"):
        if word[:-1] in stems or word[:-2] in stems:
            return "past"
        if word.endswith("ied") and word[:-3] + "y" in stems:
            return "past"
        if word[-3] == word[-4] and word[:-3] in stems:
            return "past"
    return None


def five_letter(words: Iterable[str]) -> set[str]:
    """The lowercase a-z 5-letter words, less Roman numerals."""
    return {w for w in words if FIVE.match(w) and not ROMAN.match(w)}


def make_lists(min_zipf: float, out_dir: Path) -> None:
    """Write ``answers.txt``, ``guesses.txt`` and ``LICENSE.txt`` into ``out_dir``."""
    from wordfreq import zipf_frequency  # only this command needs it

    small = read_words(SMALL_DICT)
    stems = {w for w in small if re.fullmatch(r"[a-z]+", w)}
    answers = sorted(
        w
        for w in five_letter(small)
        if zipf_frequency(w, "en") >= min_zipf
        and inflection_of(w, stems) is None
        and w not in NOT_ANSWERS
    )
    guesses = sorted(five_letter(read_words(HUGE_DICT)) | set(answers))

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "answers.txt").write_text("\n".join(answers) + "\n", encoding="ascii")
    (out_dir / "guesses.txt").write_text("\n".join(guesses) + "\n", encoding="ascii")
    (out_dir / "LICENSE.txt").write_text(licence_text(), encoding="utf-8")
    print(f"answers.txt: {len(answers)} words; guesses.txt: {len(guesses)} words")


def licence_text() -> str:
    """The notice shipped next to the lists: SCOWL's copyright, then wordfreq's credit."""
    return (
        "The word lists in this folder (answers.txt, guesses.txt) were made by\n"
        "tools/make_wordle_words.py from SCOWL (Spell Checker Oriented Word Lists,\n"
        "Kevin Atkinson), as packaged by Debian in wamerican and wamerican-huge\n"
        "2020.12.07. Answers were chosen among them with the word frequencies of\n"
        "wordfreq 3.1 (Robyn Speer; code Apache-2.0, data CC BY-SA 4.0); no\n"
        "frequency data is included here.\n"
        "\n"
        "SCOWL's copyright notice, as Debian ships it, follows verbatim.\n"
        "\n" + "=" * 72 + "\n\n" + SCOWL_COPYRIGHT.read_text(encoding="utf-8")
    )


def print_opening() -> None:
    """Print the opening guess of the env's solver (needs the project installed)."""
    from palaestra.envs.wordle.solver import best_opening

    word, expected = best_opening()
    print(f"best opening: {word} (expected answers left: {expected:.2f})")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``lists`` writes the lists, ``opening`` prints the opening guess."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lists = sub.add_parser("lists", help="write answers.txt, guesses.txt and LICENSE.txt")
    lists.add_argument("--min-zipf", type=float, default=2.5, help="answer frequency floor")
    lists.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    sub.add_parser("opening", help="print the solver's best opening guess")
    args = parser.parse_args(argv)
    if args.command == "lists":
        make_lists(args.min_zipf, args.out)
    else:
        print_opening()
    return 0


if __name__ == "__main__":
    sys.exit(main())
