"""The pair catalogue: which teachers each dataset has, and the ``dataset/teacher`` names built on it.

A *pair* names one table family: a dataset and the teacher its students distil from (``none``: plain
cross-entropy, the NAS-without-KD baseline). Parsed once into a :class:`Pair`; everything downstream
takes its ``dataset`` and ``teacher`` from there instead of splitting the string again. No torch here:
the catalogue is read by the query API and the CLI, which must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass

# dataset -> its teacher families (the models are in danas_bench.training.teachers)
TEACHERS = {
    # resnet_ens (4 ResNets) replaced resnet when its v2 table was complete (session 28; docs/teachers.md)
    "mnist1d": ("resnet_ens", "tcn"),
    "digits": ("resnet", "vgg"),
    "fashion-mnist": ("resnet", "mlp"),
    "mnist-5k": ("resnet", "mlp"),
    # tier L: trained on the user's GPU (`danas-bench teachers dataset=cifar10 device=cuda`), not shipped
    "cifar10": ("resnet", "vit"),
    "cifar100": ("resnet", "vit"),
}
# teachers no longer used for new tables, and why; the tables that distil from them stay queryable. A teacher is
# immutable once a table distils from it: a stronger teacher gets a new name, never new weights under an old one
RETIRED = {
    "mnist1d": {
        "mlp": "tables v2: 70.0% test, below the median student",
        "resnet": (
            "tables v2: at its family's ceiling (99.0%), under 2 pp above the best student; resnet_ens replaces it"
        ),
    },
    "digits": {"mlp": "tables v2: at its family's ceiling (97.0%), under 2 pp above the best student"},
}
NONE = "none"


def check_pair(dataset: str, teacher: str) -> None:
    """ValueError naming the choices when ``dataset`` has no teacher ``teacher`` (``none`` always exists)."""
    if dataset not in TEACHERS:
        raise ValueError(f"unknown dataset {dataset!r}; datasets with teachers: {', '.join(TEACHERS)}")
    known = TEACHERS[dataset] + tuple(RETIRED.get(dataset, {}))
    if teacher != NONE and teacher not in known:
        raise ValueError(f"unknown teacher {teacher!r} for {dataset}; choose one of {', '.join(known + (NONE,))}")


def all_pairs(datasets=None) -> list[str]:
    """Every current ``dataset/teacher`` name (retired teachers left out), ``none`` included."""
    return [f"{d}/{t}" for d in (datasets or TEACHERS) for t in (*TEACHERS[d], NONE)]


@dataclass(frozen=True)
class Pair:
    """A parsed ``dataset/teacher`` name. ``Pair.parse`` checks it against the catalogue;
    ``Pair.parse(text, check=False)`` only checks the shape (synthetic benches name their own pairs)."""

    dataset: str
    teacher: str

    @classmethod
    def parse(cls, pair: str | Pair, check: bool = True) -> Pair:
        if isinstance(pair, Pair):
            return pair
        if not isinstance(pair, str) or pair.count("/") != 1 or (not check and "" in pair.split("/")):
            hint = f"; valid pairs: {', '.join(all_pairs())}" if check else ""
            raise ValueError(f"pair must look like 'dataset/teacher', got {pair!r}{hint}")
        dataset, teacher = pair.split("/")
        if check:
            check_pair(dataset, teacher)
        return cls(dataset, teacher)

    @property
    def kd(self) -> bool:
        """True when students distil from a teacher (not the ``none`` baseline)."""
        return self.teacher != NONE

    @property
    def slug(self) -> str:
        """The pair as one path component: ``digits__resnet`` (the shard folder's name)."""
        return f"{self.dataset}__{self.teacher}"

    def __str__(self) -> str:
        return f"{self.dataset}/{self.teacher}"


def split_pair(pair: str) -> tuple[str, str]:
    """``(dataset, teacher)`` of a checked pair name; ValueError naming the valid pairs otherwise."""
    p = Pair.parse(pair)
    return p.dataset, p.teacher


def pair_slug(pair: str) -> str:
    return Pair.parse(pair).slug
