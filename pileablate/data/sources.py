"""Where documents come from: `pile`, `sample`, or local files, directories, globs and URLs.

A source spec expands to a list of `Source`s, each one stream of JSON lines (Pile records:
`{"text": ..., "meta": {"pile_set_name": ...}}`). Every source has a role:

- `val`: a validation shard of its own (the Pile's `val.jsonl.zst`, or any input file named
  `val.*`/`validation.*`): the validation split is taken from it;
- `train`: training documents, when some other source provides validation;
- `mixed`: no source provides validation, so documents are held out by a hash of their text.

Everything is checked before any output is written (files exist and are readable, URLs answer),
so a typo never leaves a half-made directory behind.
"""

from __future__ import annotations

import glob
import os
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pileablate.data.download import open_url
from pileablate.errors import UserError

# The uncopyrighted mirror of The Pile (Gao et al. 2020) without the Books3/OpenSubtitles/... subsets.
PILE_BASE_URL = "https://huggingface.co/datasets/monology/pile-uncopyrighted/resolve/main"
PILE_TRAIN_SHARDS = 30
PILE_BASE_URL_ENV = "PILEABLATE_PILE_URL"  # a mirror with the same layout (train/NN.jsonl.zst, val.jsonl.zst)

SUFFIXES = (".jsonl", ".jsonl.zst", ".json.zst")
VAL_STEMS = ("val", "validation", "valid")
TEST_STEMS = ("test",)

SAMPLE = "sample"
PILE = "pile"


@dataclass(frozen=True)
class Source:
    location: str  # URL, absolute path, or "sample:<stdlib dir>"
    role: str  # "train" | "val" | "mixed"
    size: Optional[int] = None  # compressed bytes, when known (progress and ETA)

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    @property
    def is_sample(self) -> bool:
        return self.location.startswith(SAMPLE + ":")

    @property
    def zstd(self) -> bool:
        return self.location.split("?")[0].endswith(".zst")

    @property
    def display_name(self) -> str:
        if self.is_sample:
            return "sample (Python standard library)"
        return self.location.rstrip("/").split("/")[-1]

    def to_json(self) -> dict:
        return {"location": self.location, "role": self.role}


def _stem(name: str) -> str:
    name = name.split("?")[0].rstrip("/").split("/")[-1]
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _supported(name: str) -> bool:
    return name.split("?")[0].endswith(SUFFIXES)


def pile_urls(base: Optional[str] = None) -> tuple[str, list[str]]:
    base = (base or os.environ.get(PILE_BASE_URL_ENV) or PILE_BASE_URL).rstrip("/")
    return f"{base}/val.jsonl.zst", [f"{base}/train/{i:02d}.jsonl.zst" for i in range(PILE_TRAIN_SHARDS)]


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def sample_files(root: Optional[Path] = None) -> list[Path]:
    """The standard library's .py files (not site-packages), in a fixed order."""
    root = root or stdlib_dir()
    files = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in ("site-packages", "dist-packages", "__pycache__")]
        files += [Path(directory, name) for name in names if name.endswith(".py")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _expand_local(spec: str) -> list[Path]:
    """The files one local spec (a file, a directory, a glob) names."""
    if any(ch in spec for ch in "*?["):
        matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
        files = [Path(m) for m in matches if Path(m).is_file() and _supported(m)]
        if not files:
            raise UserError(f"no {'/'.join(SUFFIXES)} files match {spec}; check the pattern")
        return [f.resolve() for f in files]
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _supported(p.name))
        files = [p for p in files if _stem(p.name) not in TEST_STEMS]  # never train on a test set
        if not files:
            raise UserError(f"directory {spec} holds no {'/'.join(SUFFIXES)} files; pass files, a glob, 'pile' or 'sample'")
        return [f.resolve() for f in files]
    if not path.exists():
        raise UserError(f"source {spec} does not exist; pass 'pile', 'sample', files, directories, globs or URLs")
    if not _supported(path.name):
        raise UserError(f"source {spec} is not {', '.join(SUFFIXES)}; prepare reads JSON lines (optionally zstd-compressed)")
    return [path.resolve()]


def _check_file(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            f.read(1)
        return path.stat().st_size
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}; check its permissions") from None


def _check_url(url: str) -> Optional[int]:
    """The size of `url` (None when not announced); a one-line UserError when it cannot be read."""
    with open_url(url) as response:
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None


def resolve_sources(specs: list[str]) -> list[Source]:
    """Expand and check the `--source` specs; validation sources first, each location once."""
    if not specs:
        specs = [PILE]
    entries: list[tuple[str, Optional[int], bool]] = []  # (location, size, is_val)
    for spec in specs:
        if spec == PILE:
            val, train = pile_urls()
            entries.append((val, None, True))
            entries.extend((url, None, False) for url in train)
        elif spec == SAMPLE:
            root = stdlib_dir()
            files = sample_files(root)
            if not files:
                raise UserError(f"no Python standard-library sources found under {root}; use another --source")
            entries.append((f"{SAMPLE}:{root}", sum(p.stat().st_size for p in files), False))
        elif spec.startswith(("http://", "https://")):
            if not _supported(spec):
                raise UserError(f"URL {spec} is not {', '.join(SUFFIXES)}; prepare reads JSON lines (optionally zstd)")
            entries.append((spec, None, _stem(spec) in VAL_STEMS))
        else:
            for path in _expand_local(spec):
                entries.append((str(path), _check_file(path), _stem(path.name) in VAL_STEMS))
    seen: set[str] = set()
    unique = []
    for location, size, is_val in entries:
        if location not in seen:
            seen.add(location)
            unique.append((location, size, is_val))
    # URLs are checked only now, once (in parallel), so a dead link fails before anything is written.
    urls = [location for location, _, _ in unique if location.startswith(("http://", "https://"))]
    with ThreadPoolExecutor(min(8, len(urls) or 1)) as pool:
        url_sizes = dict(zip(urls, pool.map(_check_url, urls)))  # the first failure, in order, is raised
    checked = [(loc, url_sizes.get(loc, size), is_val) for loc, size, is_val in unique]
    has_val = any(is_val for _, _, is_val in checked)
    sources = [Source(loc, "val" if is_val else ("train" if has_val else "mixed"), size) for loc, size, is_val in checked]
    return [s for s in sources if s.role == "val"] + [s for s in sources if s.role != "val"]
