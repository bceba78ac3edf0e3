"""Build the author/paper/citation graph of ``palaestra/Academia-v0`` (run once; output committed).

Writes ``envs/academia/academia.json.gz``, the only file the env reads. The
graph is invented but made to read as real:

* **Institutions**: 44 real universities and industrial labs in 16 countries,
  each with two to four research groups ("labs") on one of twelve topics
  (machine learning, NLP, vision, robotics, ...).
* **Authors**: one principal investigator and 9-32 students, post-docs and
  staff per lab, each active for a span of years. Names come from ``faker``
  (PyPI) in the locales that fit the institution's country, mixed with the
  international mix of real departments (romanized Chinese and Japanese names
  from faker's ``romanized_name`` providers; Korean names from a small list
  below, as faker has no romanized Korean), transliterated to ASCII. Names are
  unique.
* **Papers**: each lab writes a few papers a year while it is active: a
  first author from its active members, the PI last most of the time, others
  of the lab in between, and now and then a member of a partner lab of the
  same topic (co-authorship communities by institution and topic). Years
  2004-2024. Venues are the real venues of the topic (NeurIPS, ICML, ACL,
  CVPR, SIGMOD, Nature, ...), weighted. Titles are built from per-topic word
  lists in the patterns real titles follow ("X: Y for Z", "Towards ...",
  "On the ... of ...") and are unique.
* **Citations**: each paper cites 3-20 papers of strictly earlier years,
  drawn by preferential attachment (weight grows with the citations a paper
  already has, times a topic affinity, a same-lab bonus and a recency
  factor), so a few papers are cited hundreds of times and most a few times.
  A paper's citation count is its in-degree in this graph.

Everything is drawn from fixed seeds (``random.Random(SEED)``, ``Faker.seed``
and ``numpy.random.default_rng(SEED)``): the same faker and numpy give the same
file. Made with faker 40.63.0 and numpy 2.x.

Usage (faker is needed only here, never at run time)::

    .venv/bin/pip install faker
    .venv/bin/python tools/make_academia_data.py
"""

from __future__ import annotations

import gzip
import json
import math
import random
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from faker import Faker

OUT = Path(__file__).resolve().parent.parent / "envs" / "academia" / "academia.json.gz"
SEED = 20261204
FIRST_YEAR, LAST_YEAR = 2004, 2024
MAX_PAPERS_PER_AUTHOR = 32  # keeps get_author's answer well inside a tool result

# --- institutions: (name, country, locales of its people besides the international mix)
INSTITUTIONS: list[tuple[str, str, list[str]]] = [
    ("Massachusetts Institute of Technology", "United States", ["en_US"]),
    ("Stanford University", "United States", ["en_US"]),
    ("Carnegie Mellon University", "United States", ["en_US"]),
    ("University of California, Berkeley", "United States", ["en_US"]),
    ("University of Washington", "United States", ["en_US"]),
    ("Cornell University", "United States", ["en_US"]),
    ("Princeton University", "United States", ["en_US"]),
    ("University of Illinois Urbana-Champaign", "United States", ["en_US"]),
    ("Georgia Institute of Technology", "United States", ["en_US"]),
    ("University of Michigan", "United States", ["en_US"]),
    ("Google Research", "United States", ["en_US"]),
    ("Microsoft Research", "United States", ["en_US"]),
    ("IBM Research", "United States", ["en_US"]),
    ("University of Toronto", "Canada", ["en_CA"]),
    ("McGill University", "Canada", ["fr_CA", "en_CA"]),
    ("University of British Columbia", "Canada", ["en_CA"]),
    ("University of Oxford", "United Kingdom", ["en_GB"]),
    ("University of Cambridge", "United Kingdom", ["en_GB"]),
    ("University College London", "United Kingdom", ["en_GB"]),
    ("University of Edinburgh", "United Kingdom", ["en_GB"]),
    ("DeepMind", "United Kingdom", ["en_GB"]),
    ("Technical University of Munich", "Germany", ["de_DE"]),
    ("Max Planck Institute for Informatics", "Germany", ["de_DE"]),
    ("University of Tuebingen", "Germany", ["de_DE"]),
    ("ETH Zurich", "Switzerland", ["de_CH", "de_DE"]),
    ("EPFL", "Switzerland", ["fr_CH", "fr_FR"]),
    ("Inria", "France", ["fr_FR"]),
    ("Sorbonne University", "France", ["fr_FR"]),
    ("University of Amsterdam", "Netherlands", ["nl_NL"]),
    ("Delft University of Technology", "Netherlands", ["nl_NL"]),
    ("Politecnico di Milano", "Italy", ["it_IT"]),
    ("Universitat Politecnica de Catalunya", "Spain", ["es_ES"]),
    ("KTH Royal Institute of Technology", "Sweden", ["sv_SE"]),
    ("Tsinghua University", "China", ["zh_CN"]),
    ("Peking University", "China", ["zh_CN"]),
    ("Shanghai Jiao Tong University", "China", ["zh_CN"]),
    ("Zhejiang University", "China", ["zh_CN"]),
    ("University of Tokyo", "Japan", ["ja_JP"]),
    ("Kyoto University", "Japan", ["ja_JP"]),
    ("KAIST", "South Korea", ["ko"]),
    ("Seoul National University", "South Korea", ["ko"]),
    ("Indian Institute of Science", "India", ["en_IN"]),
    ("University of Sao Paulo", "Brazil", ["pt_BR"]),
    ("University of Melbourne", "Australia", ["en_AU"]),
]

# The international mix of every department: (locale, weight).
MIX: list[tuple[str, float]] = [
    ("en_US", 3.0),
    ("zh_CN", 3.0),
    ("en_IN", 1.5),
    ("de_DE", 0.6),
    ("fr_FR", 0.5),
    ("it_IT", 0.4),
    ("es_ES", 0.4),
    ("ko", 0.5),
    ("ja_JP", 0.3),
    ("pl_PL", 0.3),
    ("pt_BR", 0.3),
    ("nl_NL", 0.2),
    ("tr_TR", 0.2),
]

KOREAN_FAMILY = (
    "Kim Lee Park Choi Jung Kang Cho Yoon Jang Lim Han Oh Seo Shin Kwon Hwang Ahn Song".split()
)
KOREAN_GIVEN = (
    "Min-jun Seo-yeon Ji-hoon Ha-eun Do-hyun Ji-woo Hyun-woo Soo-jin Jae-won Eun-ji Sung-min "
    "Yoon-seo Dong-hyun Hye-jin Joon-ho Min-seo Tae-yang Ye-jin Seung-hoon Da-eun Jin-woo"
).split()


def _words(text: str) -> list[str]:
    """``"a; b; c"`` as ``["a", "b", "c"]`` (keeps the word lists compact in the source)."""
    return [w.strip() for w in text.split(";") if w.strip()]


def _venues(text: str) -> list[tuple[str, float]]:
    """``"NeurIPS=4; ICML=3"`` as ``[("NeurIPS", 4.0), ("ICML", 3.0)]`` (name, weight)."""
    pairs = [w.rsplit("=", 1) for w in _words(text)]
    return [(name, float(weight)) for name, weight in pairs]


# --- topics: venues ("name=weight; ...") and the words titles are made of ("a; b; ...")
TOPICS: dict[str, dict[str, list]] = {
    "machine learning": {
        "venues": _venues("NeurIPS=4; ICML=4; ICLR=3; AISTATS=1.5; JMLR=1; UAI=1"),
        "methods": _words(
            "Variational Inference; Gradient Descent; Bayesian Optimization; Kernel Methods; "
            "Contrastive Learning; Meta-Learning; Normalizing Flows; Diffusion Models; Gaussian "
            "Processes; Sparse Attention; Mixture of Experts; Reinforcement Learning; Stochastic "
            "Optimization; Graph Neural Networks; Distillation; Dropout"
        ),
        "tasks": _words(
            "Generalization; Representation Learning; Density Estimation; Few-Shot "
            "Classification; Uncertainty Estimation; Continual Learning; Hyperparameter Tuning; "
            "Model Compression; Domain Adaptation; Causal Discovery; Federated Learning; "
            "Out-of-Distribution Detection; Policy Optimization; Semi-Supervised Learning"
        ),
        "objects": _words(
            "Deep Networks; Overparameterized Models; Transformers; Neural Networks; Linear "
            "Models; Deep Ensembles; Recurrent Networks; Large Batches"
        ),
    },
    "natural language processing": {
        "venues": _venues("ACL=4; EMNLP=4; NAACL=2; TACL=1.5; COLING=1.5; EACL=1"),
        "methods": _words(
            "Pretrained Language Models; Sequence-to-Sequence Models; Retrieval Augmentation; "
            "Prompt Tuning; Cross-Lingual Transfer; Contrastive Pretraining; Syntactic Parsing; "
            "Instruction Tuning; Word Embeddings; Attention Mechanisms; Data Augmentation; "
            "Curriculum Learning; Latent Variable Models; Knowledge Distillation"
        ),
        "tasks": _words(
            "Machine Translation; Question Answering; Summarization; Named Entity Recognition; "
            "Dialogue Generation; Sentiment Analysis; Coreference Resolution; Relation "
            "Extraction; Semantic Parsing; Natural Language Inference; Fact Verification; Text "
            "Classification; Morphological Analysis; Code Generation"
        ),
        "objects": _words(
            "Low-Resource Languages; Long Documents; Multilingual Corpora; Social Media Text; "
            "Scientific Articles; Open-Domain Dialogue; Clinical Notes; Spoken Language"
        ),
    },
    "computer vision": {
        "venues": _venues("CVPR=4; ICCV=3; ECCV=3; TPAMI=1; BMVC=1; WACV=1"),
        "methods": _words(
            "Convolutional Networks; Vision Transformers; Self-Supervised Pretraining; Neural "
            "Radiance Fields; Feature Pyramids; Deformable Convolutions; Optical Flow; Generative "
            "Adversarial Networks; Masked Autoencoders; Point Cloud Networks; Spatial Attention; "
            "Diffusion Models; Metric Learning"
        ),
        "tasks": _words(
            "Object Detection; Semantic Segmentation; Image Captioning; Pose Estimation; Depth "
            "Estimation; Video Understanding; 3D Reconstruction; Image Super-Resolution; Visual "
            "Tracking; Action Recognition; Instance Segmentation; Novel View Synthesis; Image "
            "Retrieval; Scene Text Recognition"
        ),
        "objects": _words(
            "Autonomous Driving Scenes; Aerial Images; Medical Images; Egocentric Video; Indoor "
            "Scenes; Natural Images; Crowded Scenes; Low-Light Images"
        ),
    },
    "robotics": {
        "venues": _venues("ICRA=4; IROS=3; CoRL=2; RSS=2; IJRR=1"),
        "methods": _words(
            "Model Predictive Control; Imitation Learning; Sim-to-Real Transfer; Reinforcement "
            "Learning; Trajectory Optimization; Visual Servoing; Particle Filters; Tactile "
            "Sensing; Factor Graphs; Diffusion Policies; Whole-Body Control"
        ),
        "tasks": _words(
            "Grasping; Legged Locomotion; Dexterous Manipulation; Visual Navigation; Simultaneous "
            "Localization and Mapping; Motion Planning; Multi-Robot Coordination; Human-Robot "
            "Interaction; Object Rearrangement; Aerial Robotics"
        ),
        "objects": _words(
            "Quadruped Robots; Soft Grippers; Unstructured Environments; Deformable Objects; "
            "Mobile Manipulators; Household Robots; Micro Aerial Vehicles"
        ),
    },
    "databases": {
        "venues": _venues("SIGMOD=4; VLDB=4; ICDE=3; PODS=1; CIDR=1"),
        "methods": _words(
            "Learned Indexes; Query Optimization; Cardinality Estimation; Columnar Storage; "
            "Transaction Processing; Approximate Query Processing; Data Cleaning; Incremental "
            "View Maintenance; Adaptive Indexing; Vectorized Execution"
        ),
        "tasks": _words(
            "Stream Processing; Entity Resolution; Graph Queries; Data Integration; Time Series "
            "Analytics; Join Processing; Concurrency Control; Schema Matching; Data Lakes; "
            "Similarity Search"
        ),
        "objects": _words(
            "Main-Memory Databases; Distributed Key-Value Stores; Cloud Data Warehouses; "
            "Relational Databases; Knowledge Graphs; Spatial Data; Large Tables"
        ),
    },
    "systems": {
        "venues": _venues("OSDI=3; SOSP=2; NSDI=3; EuroSys=3; USENIX ATC=2; SIGCOMM=2"),
        "methods": _words(
            "Kernel Bypass; Remote Direct Memory Access; Speculative Execution; Consensus "
            "Protocols; Erasure Coding; Live Migration; Program Synthesis; Fine-Grained "
            "Scheduling; Hardware Offloading; Persistent Memory"
        ),
        "tasks": _words(
            "Serverless Computing; Storage Systems; Datacenter Networking; Fault Tolerance; "
            "Distributed Training; Load Balancing; Congestion Control; Resource Disaggregation; "
            "Log-Structured Storage; Model Serving"
        ),
        "objects": _words(
            "Datacenters; Microservices; Edge Devices; Multicore Machines; GPU Clusters; "
            "Wide-Area Networks; Virtual Machines"
        ),
    },
    "theory": {
        "venues": _venues("STOC=3; FOCS=3; SODA=4; ICALP=2; COLT=2"),
        "methods": _words(
            "Spectral Methods; Linear Programming; Randomized Rounding; Sketching; Semidefinite "
            "Programming; Fourier Analysis; Online Algorithms; Fixed-Parameter Algorithms; Local "
            "Search; Sum-of-Squares Proofs"
        ),
        "tasks": _words(
            "Graph Partitioning; Submodular Maximization; Property Testing; Shortest Paths; "
            "Matrix Multiplication; Streaming Algorithms; Network Flow; Bipartite Matching; Lower "
            "Bounds; Approximate Counting"
        ),
        "objects": _words(
            "Sparse Graphs; Dynamic Graphs; High Dimensions; Planar Graphs; Random Instances; "
            "Metric Spaces; Boolean Functions"
        ),
    },
    "bioinformatics": {
        "venues": _venues(
            "Nature=1; Bioinformatics=4; Nature Methods=1.5; Genome Research=2; ISMB=2; "
            "PLOS Computational Biology=2"
        ),
        "methods": _words(
            "Deep Learning; Hidden Markov Models; Graph Neural Networks; Sequence Alignment; "
            "Probabilistic Models; Protein Language Models; Phylogenetic Inference; Matrix "
            "Factorization; Variational Autoencoders"
        ),
        "tasks": _words(
            "Protein Structure Prediction; Variant Calling; Gene Expression Analysis; Single-Cell "
            "Clustering; Drug-Target Interaction Prediction; Genome Assembly; Metagenomic "
            "Binning; Splicing Prediction; Cell Type Annotation"
        ),
        "objects": _words(
            "Single-Cell RNA-seq Data; Long Reads; Cancer Genomes; Microbial Communities; Protein "
            "Families; Spatial Transcriptomics; Population-Scale Cohorts"
        ),
    },
    "human-computer interaction": {
        "venues": _venues("CHI=5; UIST=3; CSCW=2; IUI=1.5"),
        "methods": _words(
            "Mixed-Methods Studies; Interactive Visualization; Eye Tracking; Haptic Feedback; "
            "Participatory Design; Crowdsourcing; Conversational Agents; Gesture Recognition"
        ),
        "tasks": _words(
            "Accessibility; Online Collaboration; Text Entry; Creativity Support; Explainable "
            "Interfaces; Information Seeking; Programming Assistance; Digital Wellbeing"
        ),
        "objects": _words(
            "Blind Users; Older Adults; Virtual Reality; Smartwatches; Novice Programmers; Remote "
            "Teams; Children"
        ),
    },
    "security": {
        "venues": _venues("USENIX Security=4; CCS=4; IEEE S&P=3; NDSS=3"),
        "methods": _words(
            "Fuzzing; Differential Privacy; Symbolic Execution; Secure Multiparty Computation; "
            "Static Analysis; Homomorphic Encryption; Control-Flow Integrity; Side-Channel "
            "Analysis; Zero-Knowledge Proofs"
        ),
        "tasks": _words(
            "Malware Detection; Membership Inference; Adversarial Examples; Intrusion Detection; "
            "Vulnerability Discovery; Privacy-Preserving Analytics; Authentication; Binary "
            "Analysis; Supply-Chain Security"
        ),
        "objects": _words(
            "Web Browsers; Smart Contracts; Android Apps; Machine Learning Models; IoT Firmware; "
            "Trusted Execution Environments; Operating System Kernels"
        ),
    },
    "data mining": {
        "venues": _venues("KDD=4; WWW=3; WSDM=2; ICDM=2; SIGIR=3; RecSys=1.5"),
        "methods": _words(
            "Graph Embeddings; Collaborative Filtering; Tensor Factorization; Anomaly Detection; "
            "Learning to Rank; Contrastive Learning; Random Walks; Session Modeling; "
            "Counterfactual Evaluation"
        ),
        "tasks": _words(
            "Recommendation; Link Prediction; Community Detection; Click-Through Rate Prediction; "
            "Search Ranking; Fraud Detection; Query Understanding; Trend Forecasting"
        ),
        "objects": _words(
            "Social Networks; E-Commerce Platforms; Heterogeneous Graphs; Web Search Logs; "
            "Temporal Networks; News Feeds; Citation Networks"
        ),
    },
    "computational physics": {
        "venues": _venues(
            "Nature=1; Physical Review Letters=3; Science=1; Nature Physics=1.5; "
            "Journal of Computational Physics=3"
        ),
        "methods": _words(
            "Monte Carlo Simulation; Tensor Networks; Neural Network Potentials; Density "
            "Functional Theory; Lattice Boltzmann Methods; Molecular Dynamics; Physics-Informed "
            "Neural Networks; Quantum Circuits"
        ),
        "tasks": _words(
            "Phase Transitions; Turbulence Modeling; Materials Discovery; Quantum Error "
            "Correction; Climate Emulation; Protein Folding Dynamics; Many-Body Localization"
        ),
        "objects": _words(
            "Two-Dimensional Materials; Spin Glasses; Superconducting Qubits; Complex Fluids; "
            "Frustrated Magnets; Ultracold Atoms"
        ),
    },
}

ADJECTIVES = _words(
    "Efficient; Scalable; Robust; Provable; Adaptive; Unsupervised; Interpretable; Hierarchical; "
    "Fast; Data-Efficient; Differentiable; Fair; Zero-Shot; Distributed; Lightweight; Accurate; "
    "Online; Structured; Sparse; Principled"
)
NOUNS_ON = _words(
    "Convergence; Robustness; Sample Complexity; Limits; Role; Stability; Expressivity; "
    "Calibration; Benefits; Hardness; Effectiveness; Implicit Bias"
)
ACRONYM_SYLLABLES = _words(
    "Co; Flex; Graph; Deep; Meta; Hyper; Neuro; Lumi; Astra; Pro; Trans; Quanta; Sym; Omni; Vita; "
    "Tera; Nova; Syn; Cyto; Geo; Fuse; Rapid"
)
ACRONYM_TAILS = _words(
    "Net; Former; Flow; Bench; DB; Gen; Fuzz; Map; Scope; Seg; Nav; Sketch; Pilot; Store; Mind; "
    "Lens; Tune; Guard; Path; Kit"
)

_FOLD = str.maketrans(
    {
        "ł": "l",
        "Ł": "L",
        "ß": "ss",
        "ø": "o",
        "Ø": "O",
        "æ": "ae",
        "Æ": "AE",
        "\u0131": "i",  # dotless i (Turkish)
        "đ": "d",
        "Đ": "D",
        "œ": "oe",
        "ð": "d",
        "þ": "th",
    }
)

# Terms that only appear in titles from the year they were coined (no 2006 paper on transformers).
SINCE: dict[str, int] = {
    "Transformers": 2018,
    "Vision Transformers": 2021,
    "Diffusion Models": 2021,
    "Neural Radiance Fields": 2020,
    "Generative Adversarial Networks": 2015,
    "Masked Autoencoders": 2022,
    "Instruction Tuning": 2022,
    "Prompt Tuning": 2021,
    "Pretrained Language Models": 2019,
    "Retrieval Augmentation": 2020,
    "Protein Language Models": 2021,
    "Diffusion Policies": 2023,
    "Contrastive Learning": 2019,
    "Contrastive Pretraining": 2020,
    "Graph Neural Networks": 2017,
    "Sparse Attention": 2019,
    "Normalizing Flows": 2015,
    "Meta-Learning": 2016,
    "Learned Indexes": 2018,
    "Serverless Computing": 2016,
    "Physics-Informed Neural Networks": 2019,
    "Self-Supervised Pretraining": 2019,
    "Point Cloud Networks": 2017,
    "Deformable Convolutions": 2017,
    "Feature Pyramids": 2017,
    "Sim-to-Real Transfer": 2017,
    "Model Serving": 2017,
    "Distributed Training": 2013,
    "Federated Learning": 2017,
    "Spatial Transcriptomics": 2017,
    "Single-Cell RNA-seq Data": 2011,
    "Single-Cell Clustering": 2013,
    "Novel View Synthesis": 2016,
    "Code Generation": 2016,
    "Smart Contracts": 2016,
    "Conversational Agents": 2010,
    "Word Embeddings": 2013,
    "Out-of-Distribution Detection": 2017,
    "Membership Inference": 2017,
    "Adversarial Examples": 2014,
    "Mixture of Experts": 2017,
    "Knowledge Distillation": 2015,
    "Distillation": 2015,
    "Cell Type Annotation": 2015,
    "Long Reads": 2012,
    "Remote Direct Memory Access": 2012,
    "Persistent Memory": 2014,
    "Resource Disaggregation": 2016,
    "Quadruped Robots": 2012,
    "Data Lakes": 2014,
    "Cloud Data Warehouses": 2012,
    "Click-Through Rate Prediction": 2010,
    "Smartwatches": 2014,
    "Zero-Knowledge Proofs": 2012,
    "Dropout": 2013,
    "GPU Clusters": 2010,
    "Deep Learning": 2013,
    "Deep Ensembles": 2017,
    "Overparameterized Models": 2018,
    "Tensor Networks": 2008,
    "Superconducting Qubits": 2008,
    "Egocentric Video": 2012,
    "Trusted Execution Environments": 2014,
    "Microservices": 2014,
    "Edge Devices": 2013,
    "Variational Autoencoders": 2014,
    "Few-Shot Classification": 2016,
}


def ascii_fold(text: str) -> str:
    """``text`` transliterated to ASCII (accents dropped, a few letters spelled out)."""
    text = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return text.encode("ascii", "ignore").decode("ascii")


@dataclass
class Lab:
    """A research group: where, on what, when, how productive, who, and with whom."""

    index: int
    institution: int
    topic: str
    start: int
    end: int
    rate: float  # papers per active year
    members: list[int] = field(default_factory=list)  # author indices; members[0] is the PI
    partners: list[int] = field(default_factory=list)


@dataclass
class Author:
    """A person while the graph is made (the file keeps name and institution)."""

    name: str
    institution: int
    lab: int
    start: int
    end: int
    weight: float  # how often picked as an author


class NameMaker:
    """Unique, ASCII, realistic person names by locale (faker, seeded)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.fakers: dict[str, Faker] = {}
        self.used: set[str] = set()

    def _faker(self, locale: str) -> Faker:
        if locale not in self.fakers:
            fake = Faker(locale)
            fake.seed_instance(SEED + len(self.fakers))
            self.fakers[locale] = fake
        return self.fakers[locale]

    def _one(self, locale: str) -> str:
        if locale == "ko":
            return f"{self.rng.choice(KOREAN_GIVEN)} {self.rng.choice(KOREAN_FAMILY)}"
        fake = self._faker(locale)
        if locale in ("zh_CN", "ja_JP"):
            return f"{fake.first_romanized_name()} {fake.last_romanized_name()}"
        return f"{fake.first_name()} {fake.last_name()}"

    def make(self, locale: str) -> str:
        """A name from ``locale`` not used yet (``ko``: the Korean lists above)."""
        for _ in range(200):
            name = " ".join(ascii_fold(self._one(locale)).split())
            if name and name.lower() not in self.used and all(len(p) > 1 for p in name.split()):
                self.used.add(name.lower())
                return name
        raise RuntimeError(f"no fresh name for {locale}")


class TitleMaker:
    """Unique paper titles in the patterns real titles follow."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _acronym(self) -> str:
        return self.rng.choice(ACRONYM_SYLLABLES) + self.rng.choice(ACRONYM_TAILS)

    def _one(self, topic: str, year: int) -> str:
        words = TOPICS[topic]
        r = self.rng

        def current(kind: str) -> list[str]:
            return [w for w in words[kind] if SINCE.get(w, 0) <= year]

        method, task, obj = (
            r.choice(current("methods")),
            r.choice(current("tasks")),
            r.choice(current("objects")),
        )
        adj = r.choice(ADJECTIVES)
        patterns = [
            f"{adj} {task} with {method}",
            f"{self._acronym()}: {adj} {method} for {task}",
            f"Towards {adj} {task} in {obj}",
            f"On the {r.choice(NOUNS_ON)} of {method} for {task}",
            f"{method} for {task} in {obj}",
            f"Learning {task} from {obj} via {method}",
            f"{self._acronym()}: {task} for {obj}",
            f"Revisiting {method} for {adj} {task}",
            f"{adj} {method} for {obj}",
            f"A Benchmark for {task} on {obj}",
            f"When Does {method} Help {task}?",
            f"Scaling {method} to {obj}",
        ]
        weights = [4, 3, 2, 2, 3, 2, 2, 1.5, 2, 1, 0.7, 1]
        return r.choices(patterns, weights)[0]

    def make(self, topic: str, year: int) -> str:
        """A title on ``topic`` not used yet, with no term newer than ``year``."""
        for _ in range(500):
            title = self._one(topic, year)
            if title.lower() not in self.used:
                self.used.add(title.lower())
                return title
        raise RuntimeError(f"no fresh title for {topic}")


def build() -> dict:
    """The whole data set as plain JSON-ready data."""
    rng = random.Random(SEED)
    names = NameMaker(random.Random(SEED + 1))
    titles = TitleMaker(random.Random(SEED + 2))
    topic_names = list(TOPICS)

    # Labs: 2-4 per institution, topics drawn with ML/NLP/CV more common, as in CS departments.
    topic_weights = [3, 2.5, 2.5, 1.5, 1.2, 1.2, 1, 1, 1, 1, 1.2, 0.8]
    labs: list[Lab] = []
    for inst in range(len(INSTITUTIONS)):
        topics = set()
        for _ in range(rng.choice([2, 2, 3, 3, 4])):
            topics.add(rng.choices(topic_names, topic_weights)[0])
        for topic in sorted(topics):
            start = rng.randint(FIRST_YEAR, 2016)
            end = min(LAST_YEAR, start + rng.randint(8, 20))
            labs.append(Lab(len(labs), inst, topic, start, end, rate=rng.uniform(1.2, 3.0)))
    # Partner labs: same topic, elsewhere; collaborations repeat between them.
    for lab in labs:
        others = [
            o.index for o in labs if o.topic == lab.topic and o.institution != lab.institution
        ]
        rng.shuffle(others)
        lab.partners = others[: rng.randint(1, 3)]

    # Authors: a PI for the lab's whole span, then members with shorter spans.
    authors: list[Author] = []
    for lab in labs:
        locales = INSTITUTIONS[lab.institution][2]
        span = lab.end - lab.start + 1
        for k in range(1 + rng.randint(9, 12 + span)):
            if rng.random() < 0.55:
                locale = rng.choice(locales)
            else:
                locale = rng.choices([m for m, _ in MIX], [w for _, w in MIX])[0]
            if k == 0:
                start, end, weight = lab.start, lab.end, 1.0
            else:
                start = rng.randint(lab.start, max(lab.start, lab.end - 2))
                end = min(lab.end, start + rng.randint(2, 8))
                weight = rng.uniform(0.3, 1.0)
            lab.members.append(len(authors))
            authors.append(
                Author(names.make(locale), lab.institution, lab.index, start, end, weight)
            )

    # Papers.
    papers: list[dict] = []
    count = [0] * len(authors)

    def pick(pool: list[int], exclude: set[int]) -> int | None:
        pool = [a for a in pool if a not in exclude and count[a] < MAX_PAPERS_PER_AUTHOR]
        if not pool:
            return None
        return rng.choices(pool, [authors[a].weight for a in pool])[0]

    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        for lab in labs:
            if not lab.start <= year <= lab.end:
                continue
            n = sum(rng.random() < lab.rate / 3 for _ in range(3))
            for _ in range(n):
                active = [a for a in lab.members[1:] if authors[a].start <= year <= authors[a].end]
                chosen: list[int] = []
                first = pick(active, set())
                if first is None:
                    continue
                chosen.append(first)
                for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
                    other = pick(active, set(chosen))
                    if other is not None:
                        chosen.append(other)
                if lab.partners and rng.random() < 0.25:
                    partner = labs[rng.choice(lab.partners)]
                    pool = [
                        a for a in partner.members if authors[a].start <= year <= authors[a].end
                    ]
                    guest = pick(pool, set(chosen))
                    if guest is not None:
                        chosen.insert(rng.randint(1, len(chosen)), guest)
                pi = lab.members[0]
                if rng.random() < 0.85 and count[pi] < MAX_PAPERS_PER_AUTHOR and pi not in chosen:
                    chosen.append(pi)
                for a in chosen:
                    count[a] += 1
                venues = TOPICS[lab.topic]["venues"]
                venue = rng.choices([v for v, _ in venues], [w for _, w in venues])[0]
                papers.append(
                    {
                        "title": titles.make(lab.topic, year),
                        "year": year,
                        "venue": venue,
                        "authors": chosen,
                        "topic": lab.topic,
                        "lab": lab.index,
                    }
                )

    # Citations: preferential attachment over strictly earlier years.
    np_rng = np.random.default_rng(SEED)
    indeg = np.zeros(len(papers))
    years = np.array([p["year"] for p in papers])
    topics = np.array([topic_names.index(p["topic"]) for p in papers])
    lab_of = np.array([p["lab"] for p in papers])
    for i, paper in enumerate(papers):  # papers are in year order
        earlier = np.flatnonzero(years < paper["year"])
        paper["refs"] = []
        if len(earlier) == 0:
            continue
        k = min(len(earlier), int(np_rng.integers(3, 21)))
        affinity = np.where(topics[earlier] == topics[i], 1.0, 0.04)
        affinity *= np.where(lab_of[earlier] == lab_of[i], 3.0, 1.0)
        recency = np.exp(-(paper["year"] - years[earlier]) / 7.0)
        weight = (indeg[earlier] + 3.0) * affinity * recency
        chosen = np_rng.choice(earlier, size=k, replace=False, p=weight / weight.sum())
        paper["refs"] = sorted(int(c) for c in chosen)
        indeg[chosen] += 1

    # Ids: papers and authors in a shuffled order, so ids say nothing of year or lab.
    paper_order = list(range(len(papers)))
    # Authors who never published (a member whose span drew no paper) are left out.
    author_order = sorted({a for p in papers for a in p["authors"]})
    rng.shuffle(paper_order)
    rng.shuffle(author_order)
    paper_id = {old: new for new, old in enumerate(paper_order)}
    author_id = {old: new for new, old in enumerate(author_order)}
    out_authors = [[authors[old].name, authors[old].institution] for old in author_order]
    out_papers = [
        [
            papers[old]["title"],
            papers[old]["year"],
            papers[old]["venue"],
            [author_id[a] for a in papers[old]["authors"]],
            sorted(paper_id[r] for r in papers[old]["refs"]),
        ]
        for old in paper_order
    ]
    return {
        "format": "academia-1: authors [name, institution index]; papers [title, year, venue, "
        "author indices in order, indices of cited papers]",
        "institutions": [[name, country] for name, country, _ in INSTITUTIONS],
        "authors": out_authors,
        "papers": out_papers,
    }


def main() -> None:
    """Build and write the data file, and print its size and a few statistics."""
    data = build()
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    assert text.isascii()
    OUT.write_bytes(gzip.compress(text.encode("ascii"), compresslevel=9, mtime=0))
    cited = [0] * len(data["papers"])
    for paper in data["papers"]:
        for r in paper[4]:
            cited[r] += 1
    top = sorted(cited, reverse=True)
    per_author = [0] * len(data["authors"])
    for paper in data["papers"]:
        for a in paper[3]:
            per_author[a] += 1
    print(
        f"{OUT}: {OUT.stat().st_size:,} bytes; {len(data['authors'])} authors, "
        f"{len(data['papers'])} papers, {sum(cited)} citations; top cited {top[:5]}, "
        f"median {top[len(top) // 2]}, uncited {cited.count(0)}; papers per author max "
        f"{max(per_author)}, none {per_author.count(0)}; mean authors per paper "
        f"{sum(len(p[3]) for p in data['papers']) / len(data['papers']):.2f}; "
        f"log10 max {math.log10(max(top)):.2f}"
    )


if __name__ == "__main__":
    main()
