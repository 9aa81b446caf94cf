"""The 18 correctness configurations and the 7 benchmark configurations, as data.

Sizes, masks, distributions and seeds are those of the public TriMul task (GPU MODE's
reference-kernels, problems/bioml/trimul/task.yml); hidden size H = 128 throughout. A run's
seed is mixed into every configuration's seed (reference.mix), so a program cannot be tuned to
one fixed set of inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Spec:
    n: int  # sequence length N
    b: int  # batch B
    c: int  # channels C
    masked: bool  # random {0, 1} mask, else all ones
    dist: str  # "normal" or "cauchy"
    seed: int

    @property
    def label(self) -> str:
        return (f"N={self.n} B={self.b} C={self.c} {'mask' if self.masked else 'no-mask'} "
                f"{self.dist}")

    @property
    def output_bytes(self) -> int:
        return self.b * self.n * self.n * self.c * 4

    def as_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


TESTS = (
    Spec(32, 1, 128, False, "normal", 9371),
    Spec(32, 1, 128, True, "normal", 1092),
    Spec(64, 2, 256, False, "normal", 2291),
    Spec(64, 2, 256, True, "normal", 210284),
    Spec(128, 1, 768, False, "normal", 81934),
    Spec(256, 1, 128, False, "normal", 1932),
    Spec(256, 1, 128, True, "normal", 10432),
    Spec(768, 2, 128, False, "normal", 731),
    Spec(1024, 1, 384, True, "normal", 53121),
    Spec(1024, 1, 768, False, "normal", 31),
    Spec(1024, 1, 768, True, "normal", 4921),
    Spec(32, 1, 128, False, "cauchy", 937321),
    Spec(64, 2, 256, False, "cauchy", 2291),
    Spec(128, 1, 768, False, "cauchy", 8134),
    Spec(256, 1, 128, False, "cauchy", 932),
    Spec(768, 2, 128, False, "cauchy", 31),
    Spec(1024, 1, 384, True, "cauchy", 5321),
    Spec(1024, 1, 768, True, "cauchy", 491),
)

# (N, B, C, mask, distribution) as in the issue; the score is the geometric mean of their times.
BENCHMARKS = (
    Spec(256, 2, 128, False, "normal", 9371),
    Spec(768, 1, 128, False, "cauchy", 381),
    Spec(256, 2, 384, True, "normal", 2301),
    Spec(512, 1, 128, False, "normal", 12819),
    Spec(1024, 1, 128, False, "cauchy", 381),
    Spec(768, 1, 384, True, "normal", 481),
    Spec(1024, 1, 384, False, "normal", 23291),
)


def reduced(specs: tuple[Spec, ...], max_n: int) -> tuple[Spec, ...]:
    """The same configurations with N capped at max_n (correctness mode on a CPU)."""
    return tuple(replace(s, n=min(s.n, max_n)) for s in specs)


def recheck_set(specs: tuple[Spec, ...], budget_bytes: int) -> list[int]:
    """Indices of the configurations whose outputs the driver re-checks: smallest output first,
    as many as fit in budget_bytes (ties broken by position, so the choice is deterministic)."""
    chosen, used = [], 0
    for i in sorted(range(len(specs)), key=lambda i: (specs[i].output_bytes, i)):
        if used + specs[i].output_bytes > budget_bytes:
            break
        chosen.append(i)
        used += specs[i].output_bytes
    return sorted(chosen)
