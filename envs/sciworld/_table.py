"""ScienceWorld's tasks and their train/dev/test variations (generated; do not edit).

Made by ``python -m palaestra.envs.sciworld.make_table`` from a live JVM.
Each row: (paper id, task name, number of variations, train, dev, test), the
splits as ``(start, stop)`` runs of variation indices.
"""

SCIENCEWORLD_VERSION = "1.2.3"

TABLE = (
    ("1-1", "boil", 30, ((0, 14),), ((14, 21),), ((21, 30),)),
    ("1-2", "melt", 30, ((0, 14),), ((14, 21),), ((21, 30),)),
    ("1-3", "freeze", 30, ((0, 14),), ((14, 21),), ((21, 30),)),
    ("1-4", "change-the-state-of-matter-of", 30, ((0, 14),), ((14, 21),), ((21, 30),)),
    ("2-1", "use-thermometer", 540, ((0, 270),), ((270, 405),), ((405, 540),)),
    (
        "2-2",
        "measure-melting-point-known-substance",
        436,
        ((0, 218),),
        ((218, 327),),
        ((327, 436),),
    ),
    (
        "2-3",
        "measure-melting-point-unknown-substance",
        300,
        ((0, 150),),
        ((150, 225),),
        ((225, 300),),
    ),
    ("3-1", "power-component", 20, ((0, 10),), ((10, 15),), ((15, 20),)),
    (
        "3-2",
        "power-component-renewable-vs-nonrenewable-energy",
        20,
        ((0, 10),),
        ((10, 15),),
        ((15, 20),),
    ),
    ("3-3", "test-conductivity", 900, ((0, 450),), ((450, 675),), ((675, 900),)),
    (
        "3-4",
        "test-conductivity-of-unknown-substances",
        600,
        ((0, 300),),
        ((300, 450),),
        ((450, 600),),
    ),
    ("4-1", "find-living-thing", 300, ((0, 150),), ((150, 225),), ((225, 300),)),
    ("4-2", "find-non-living-thing", 300, ((0, 150),), ((150, 225),), ((225, 300),)),
    ("4-3", "find-plant", 300, ((0, 150),), ((150, 225),), ((225, 300),)),
    ("4-4", "find-animal", 300, ((0, 150),), ((150, 225),), ((225, 300),)),
    ("5-1", "grow-plant", 126, ((0, 62),), ((62, 93),), ((93, 126),)),
    ("5-2", "grow-fruit", 126, ((0, 62),), ((62, 93),), ((93, 126),)),
    ("6-1", "chemistry-mix", 32, ((0, 16),), ((16, 24),), ((24, 32),)),
    ("6-2", "chemistry-mix-paint-secondary-color", 36, ((0, 18),), ((18, 27),), ((27, 36),)),
    ("6-3", "chemistry-mix-paint-tertiary-color", 36, ((0, 18),), ((18, 27),), ((27, 36),)),
    ("7-1", "lifespan-longest-lived", 125, ((0, 62),), ((62, 93),), ((93, 125),)),
    ("7-2", "lifespan-shortest-lived", 125, ((0, 62),), ((62, 93),), ((93, 125),)),
    (
        "7-3",
        "lifespan-longest-lived-then-shortest-lived",
        125,
        ((0, 62),),
        ((62, 93),),
        ((93, 125),),
    ),
    ("8-1", "identify-life-stages-1", 14, ((0, 6),), ((6, 9),), ((9, 14),)),
    ("8-2", "identify-life-stages-2", 10, ((0, 4),), ((4, 6),), ((6, 10),)),
    ("9-1", "inclined-plane-determine-angle", 168, ((0, 84),), ((84, 126),), ((126, 168),)),
    (
        "9-2",
        "inclined-plane-friction-named-surfaces",
        1386,
        ((0, 692),),
        ((692, 1038),),
        ((1038, 1386),),
    ),
    (
        "9-3",
        "inclined-plane-friction-unnamed-surfaces",
        162,
        ((0, 80),),
        ((80, 120),),
        ((120, 162),),
    ),
    ("10-1", "mendelian-genetics-known-plant", 120, ((0, 60),), ((60, 90),), ((90, 120),)),
    ("10-2", "mendelian-genetics-unknown-plant", 480, ((0, 240),), ((240, 360),), ((360, 480),)),
)
