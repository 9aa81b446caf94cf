"""Count matrices (cells x genes) and the molecular cross-validation split.

Sources: the default celltypist sample (559 PBMC-like cells, raw UMI counts, shipped in the
PyPI package `celltypist`), an .h5ad file of raw counts (needs `anndata`), or a seeded synthetic
generator for tests. Every source drops genes with no counts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from discover.model.store import cache_root

CELLTYPIST_CSV = Path("data") / "samples" / "sample_cell_by_gene.csv"
CACHE_NAME = "celltypist_sample_counts_v1.npz"
INTEGER_TOL = 1e-6  # the CSV holds counts written as floats within 1e-11 of integers


@dataclass
class Counts:
    x: np.ndarray  # int64, cells x genes, every gene expressed
    genes: list[str]
    cells: list[str]
    source: str


@dataclass
class Split:
    train: np.ndarray  # int64
    test: np.ndarray  # int64; train + test == the original counts
    digest: str  # identifies the counts and the split: artefacts name the data they scored on


def drop_unexpressed(counts: Counts) -> Counts:
    keep = counts.x.sum(axis=0) > 0
    genes = [g for g, k in zip(counts.genes, keep, strict=True) if k]
    return Counts(counts.x[:, keep], genes, counts.cells, counts.source)


def top_genes(counts: Counts, n_genes: int | None) -> Counts:
    """The n_genes genes with the most counts (ties by column order), in column order."""
    if n_genes is None or n_genes >= counts.x.shape[1]:
        return counts
    if n_genes < 1:
        raise ValueError(f"n_genes must be a positive integer or None, got {n_genes!r}")
    order = np.argsort(-counts.x.sum(axis=0), kind="stable")[:n_genes]
    keep = np.sort(order)
    return Counts(counts.x[:, keep], [counts.genes[i] for i in keep], counts.cells,
                  counts.source)


def as_counts(x: np.ndarray, what: str) -> np.ndarray:
    """Round near-integer non-negative values to int64; refuse anything else."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or min(x.shape) == 0:
        raise ValueError(f"{what}: expected a non-empty cells x genes matrix, got shape {x.shape}")
    r = np.rint(x)
    if not np.all(np.isfinite(x)) or np.abs(x - r).max() > INTEGER_TOL or r.min() < 0:
        raise ValueError(f"{what}: molecular cross-validation needs raw counts (non-negative "
                         "integers); this matrix is not (normalised or log-transformed?)")
    return r.astype(np.int64)


# --- the default data set -------------------------------------------------------------------

def celltypist_csv() -> Path:
    # Locate the package without importing it: its __init__ imports scanpy, not installed here.
    spec = importlib.util.find_spec("celltypist")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default data needs the PyPI package celltypist (its sample "
                                "matrix only): `pip install --no-deps celltypist`, or pass "
                                "data=FILE.h5ad or data='synthetic'")
    path = Path(list(spec.submodule_search_locations)[0]) / CELLTYPIST_CSV
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall celltypist")
    return path


def read_counts_csv(path: Path) -> Counts:
    """A CSV with gene names in the first row and cell ids in the first column."""
    with open(path) as f:
        header = f.readline().rstrip("\r\n").split(",")
        if header[0] != "":
            raise ValueError(f"{path}: expected an empty first header field (cell ids column), "
                             f"got {header[0]!r}")
        cells, rows = [], []
        for n, line in enumerate(f, start=2):
            cell, _, rest = line.rstrip("\r\n").partition(",")
            row = np.array(rest.split(","), dtype=np.float64)
            if row.size != len(header) - 1:
                raise ValueError(f"{path}:{n}: {row.size} values, expected {len(header) - 1}")
            cells.append(cell)
            rows.append(row)
    return Counts(as_counts(np.vstack(rows), str(path)), header[1:], cells, str(path))


def load_celltypist() -> Counts:
    """The celltypist sample, expressed genes only; parsed once (3 s) and cached as .npz."""
    cache = cache_root() / "data" / CACHE_NAME
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return Counts(z["x"].astype(np.int64), z["genes"].tolist(), z["cells"].tolist(),
                              str(z["source"]))
        except (OSError, ValueError, KeyError):
            pass  # unreadable (e.g. a truncated write): parse again
    counts = drop_unexpressed(read_counts_csv(celltypist_csv()))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp.npz")  # concurrent workers: atomic
    np.savez_compressed(tmp, x=counts.x.astype(np.int32), genes=np.array(counts.genes),
                        cells=np.array(counts.cells), source=counts.source)
    os.replace(tmp, cache)
    return counts


# --- other sources --------------------------------------------------------------------------

def load_h5ad(path: str | Path) -> Counts:
    """Raw counts from the `counts` layer if there is one, else from X."""
    try:
        import anndata
    except ImportError as e:
        raise ImportError("reading .h5ad files needs anndata: pip install discover[h5ad]") from e
    adata = anndata.read_h5ad(path)
    x = adata.layers["counts"] if "counts" in adata.layers else adata.X
    if hasattr(x, "toarray"):  # sparse
        x = x.toarray()
    counts = Counts(as_counts(x, str(path)), [str(g) for g in adata.var_names],
                    [str(c) for c in adata.obs_names], str(path))
    return drop_unexpressed(counts)


def synthetic(n_cells: int = 200, n_genes: int = 1000, rank: int = 4, depth: float = 1000.0,
              dispersion: float = 0.1, seed: int = 0) -> Counts:
    """Low-rank gamma-Poisson (negative binomial) counts, sparse like droplet data (about 30%
    non-zero with the defaults).

    Cells belong to `rank` types; a cell's expression is a mix of the type programs dominated
    by its own; gene programs are heavy-tailed (a few genes take most counts); library sizes
    are log-normal around `depth`; each count is Poisson with a gamma-distributed rate of mean
    mu and variance mu + dispersion * mu^2 (overdispersion).
    """
    rng = np.random.default_rng(seed)
    programs = rng.gamma(0.1, 1.0, size=(rank, n_genes)) + 1e-4
    programs /= programs.sum(axis=1, keepdims=True)
    types = rng.integers(rank, size=n_cells)
    mix = rng.dirichlet(np.full(rank, 0.2), size=n_cells)
    mix[np.arange(n_cells), types] += 2.0
    mix /= mix.sum(axis=1, keepdims=True)
    library = depth * rng.lognormal(0.0, 0.4, size=(n_cells, 1))
    mu = library * (mix @ programs)
    rate = rng.gamma(1.0 / dispersion, mu * dispersion)
    x = rng.poisson(rate).astype(np.int64)
    counts = Counts(x, [f"gene_{j}" for j in range(n_genes)],
                    [f"cell_{i}" for i in range(n_cells)], f"synthetic(seed={seed})")
    return drop_unexpressed(counts)


def load(data: str | None, n_genes: int | None = None) -> Counts:
    """data: None (the celltypist sample), 'synthetic', or a path to an .h5ad file."""
    if data is None or data == "celltypist":
        counts = load_celltypist()
    elif data == "synthetic":
        counts = synthetic()
    elif str(data).endswith(".h5ad"):
        counts = load_h5ad(data)
    else:
        raise ValueError(f"unknown data {data!r}: use a path to an .h5ad file of raw counts, "
                         "'synthetic', or leave it unset for the celltypist sample")
    return top_genes(counts, n_genes)


# --- molecular cross-validation ---------------------------------------------------------------

def split_counts(x: np.ndarray, train_frac: float = 0.9, seed: int = 0) -> Split:
    """Each molecule goes to train with probability train_frac, else to test (binomial
    thinning, as molecular_cross_validation.util.split_molecules with no overlap)."""
    if not 0 < train_frac < 1:
        raise ValueError(f"train_frac must lie strictly between 0 and 1, got {train_frac!r}")
    rng = np.random.default_rng(seed)
    train = rng.binomial(x, train_frac).astype(np.int64)
    test = x - train
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x, dtype=np.int64).tobytes())
    h.update(repr((x.shape, float(train_frac), int(seed))).encode())
    return Split(train, test, h.hexdigest()[:16])
