"""A user's modifications: `--mods-file my_mods.py` and the `pileablate.mods` entry-point group.

A file registers components and modifications exactly as the built-ins in pileablate/mods/ do. Loading
it is checked before any run starts: a missing file, one that does not import, a name already taken, an
unknown slot, or a component whose output has the wrong shape on a nano model is one `error:` line
naming the file and the modification. What a run used is recorded in its config as "PATH#sha256=HEX",
so a resumed run, a worker process and `generate` load the same file and notice when it changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable, Optional

import torch

from pileablate.errors import UserError

ENTRY_POINT_GROUP = "pileablate.mods"
_SEP = "#sha256="
_loaded: dict[str, str] = {}  # absolute path -> sha256 of the loaded version
_checked: set[str] = set()  # sha256 of the files whose modifications passed check_modification here
_entry_points_loaded = False


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_record(entry: str) -> tuple[Path, Optional[str]]:
    """"PATH#sha256=HEX" (or a plain path) -> (path, the recorded sha256 or None)."""
    path, _, digest = str(entry).partition(_SEP)
    return Path(path), digest or None


def load_mods_files(entries: Iterable[str]) -> tuple[str, ...]:
    """Load every file (plain paths or recorded entries) and return their records, in order.

    A recorded entry whose file has changed since is refused: the run would build another model."""
    load_entry_points()
    records = []
    for entry in entries:
        path, recorded = split_record(entry)
        if not path.is_file():
            raise UserError(f"--mods-file {path}: no such file; pass the path of a Python file that registers modifications")
        path = path.resolve()
        digest = sha256_of(path)
        if recorded is not None and recorded != digest:
            raise UserError(f"--mods-file {path} has changed since the run recorded it (sha256 {recorded[:12]} -> "
                            f"{digest[:12]}); restore that version or start a new run with --name")
        if _loaded.get(str(path)) != digest:
            _load_file(path, digest)
        records.append(f"{path}{_SEP}{digest}")
    return tuple(records)


def changed_files(records: Iterable[str]) -> list[str]:
    """The recorded mods files that are missing or differ from what a run recorded (for reports)."""
    out = []
    for entry in records:
        path, recorded = split_record(entry)
        if not path.is_file():
            out.append(f"{path} (missing)")
        elif recorded is not None and sha256_of(path) != recorded:
            out.append(f"{path} (changed since the run)")
    return out


def _load_file(path: Path, digest: str) -> None:
    from pileablate.registry import modifications, registering_from, unregister

    origin = str(path)
    unregister(origin)  # a new version of a file loaded before in this process
    before = set(modifications())
    # Registered under a stable name in sys.modules: torch.compile (and pickling) re-import a module by
    # its name, and a file executed without one cannot be found again.
    name = f"pileablate_user_mods_{digest[:16]}"
    with registering_from(origin):
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except UserError:
            sys.modules.pop(name, None)
            unregister(origin)
            raise
        except BaseException as err:  # noqa: BLE001 - any failure of the user's code is one line
            sys.modules.pop(name, None)
            unregister(origin)
            raise UserError(f"--mods-file {path} does not import: {type(err).__name__}: {err}".splitlines()[0]) from None
    try:
        if digest not in _checked:  # the check builds each modification alone: the same file passes it again
            for added in [n for n in modifications() if n not in before]:
                check_modification(added)
    except UserError:
        unregister(origin)
        raise
    _checked.add(digest)
    _loaded[origin] = digest


def load_entry_points() -> None:
    """Register the modifications of installed packages (entry-point group `pileablate.mods`), once."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    from pileablate.registry import modifications, registering_from

    for point in entry_points(group=ENTRY_POINT_GROUP):
        before = set(modifications())
        with registering_from(f"entry point {point.name} ({point.value})"):
            try:
                point.load()
            except UserError:
                raise
            except Exception as err:  # noqa: BLE001
                raise UserError(f"entry point {point.value} ({ENTRY_POINT_GROUP}) does not import: {type(err).__name__}: {err}") from None
        for name in [n for n in modifications() if n not in before]:
            check_modification(name)


# ---- the check a file's modifications pass when loaded -------------------------------------------

CHECK_VOCAB = 257
CHECK_TOKENS = 16
# The causality probe's context: long enough that a leak past position 300 of 512 shows.
CHECK_CONTEXT = 512


def check_modification(name: str) -> None:
    """Build `name` alone on the nano preset, run every component it fills once, the whole model once,
    and the causality probe (eval and training mode, over a 512-token context): UserError naming its
    file when a component fails, returns the wrong shape, or lets the model see the future."""
    from pileablate.model.build import build_model_config
    from pileablate.model.guards import check_causality
    from pileablate.registry import TRAINER_SLOTS, modification

    mod = modification(name)
    where = f"{mod.origin}: modification {name!r}"
    try:
        cfg = build_model_config("nano", (name,), CHECK_VOCAB, seq_len=CHECK_CONTEXT)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for slot, chosen in mod.fills.items():
            if slot not in TRAINER_SLOTS:
                _check_component(where, cfg, slot, chosen)
        model = _run(where, "the model", lambda: _gpt(cfg))
        logits = _run(where, "the model", lambda: _logits(model))
        _expect(where, "the model's logits", logits, (2, CHECK_TOKENS, cfg.vocab_size))
        if mod.target == "model":
            try:
                check_causality(model)
            except UserError as err:
                raise UserError(f"{where}: {err}") from None
        if any(slot in TRAINER_SLOTS for slot in mod.fills):
            _run(where, "its optimizer and schedule", lambda: _check_trainer(name, model))


def _run(where: str, what: str, fn):
    try:
        return fn()
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's code, reported in one line
        raise UserError(f"{where}: {what} fails on a nano model: {type(err).__name__}: {err}".splitlines()[0]) from None


def _expect(where: str, what: str, tensor, shape: tuple) -> None:
    got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
    if got != tuple(shape):
        raise UserError(f"{where}: {what} has shape {got}, expected {tuple(shape)}")


def _check_component(where: str, cfg, slot: str, chosen: str) -> None:
    """One component alone on a nano batch, called as the model calls it (SLOTS in pileablate/registry.py)."""
    from pileablate.model.context import Context
    from pileablate.registry import HOOKS, component

    build = component(slot, chosen).build
    if build is None or slot in HOOKS:  # hooks run inside attention: the whole model checks them
        return
    d = cfg.d_model
    x = torch.randn(2, CHECK_TOKENS, d)
    what = f"{slot} component {chosen!r}"

    def context() -> Context:
        ctx = Context(start=0, length=CHECK_TOKENS)
        position = component("position", cfg.position).build(cfg)  # the rotation attention may need
        position(torch.zeros(2, CHECK_TOKENS, d), ctx)
        return ctx

    if slot == "norm":
        out = _run(where, what, lambda: build(cfg, d)(x))
    elif slot == "mlp":
        out = _run(where, what, lambda: build(cfg, cfg.ffn_hidden)(x))
    elif slot == "head":
        x = torch.randn(2, CHECK_TOKENS, cfg.vocab_size)
        out = _run(where, what, lambda: build(cfg)(x))
    elif slot == "objective":
        return  # its heads' logits are checked by the causality probe
    elif slot == "position":
        out = _run(where, what, lambda: build(cfg)(x, Context(start=0, length=CHECK_TOKENS)))
    else:  # attention, feedforward, block: (config, layer) -> module(x, ctx)
        out = _run(where, what, lambda: build(cfg, 0)(x, context()))
    _expect(where, f"the output of its {what}", out, tuple(x.shape))


def _gpt(cfg):
    from pileablate.model.gpt import GPT

    return GPT(cfg)


def _logits(model) -> torch.Tensor:
    idx = torch.randint(0, CHECK_VOCAB, (2, CHECK_TOKENS))
    return model(idx, idx).logits


def _check_trainer(name: str, model) -> None:
    from pileablate.train.config import TrainConfig
    from pileablate.train.optimizer import make_optimizer, make_schedule

    train_cfg = TrainConfig(mods=(name,), lr=1e-3, min_lr=1e-4, warmup_steps=10)
    optimizer = make_optimizer(model, train_cfg, torch.device("cpu"))
    idx = torch.randint(0, CHECK_VOCAB, (2, CHECK_TOKENS))
    model(idx, idx).loss.backward()
    optimizer.step()
    rate = make_schedule(train_cfg)(0, 0.0)
    if not isinstance(rate, (int, float)) or rate < 0:
        raise UserError(f"its schedule returned {rate!r} at step 0, not a learning rate >= 0")


def load_recorded(records: Iterable[str]) -> None:
    """Load the mods files a run recorded (generate, export): a changed file is refused; a missing one
    is skipped, so a file given again with --mods-file (moved elsewhere) serves instead."""
    for entry in records:
        if split_record(entry)[0].is_file():
            load_mods_files([entry])


def changed_in_runs(folders: Iterable[Path]) -> list[str]:
    """One note per mods file that runs under `folders` recorded and that has changed or gone since."""
    from pileablate.jsonfile import read_json

    notes: dict[str, None] = {}
    for folder in folders:
        for config in sorted(Path(folder).glob("**/config.json")):
            try:
                records = read_json(config).get("train", {}).get("mods_files", ())
            except Exception:  # noqa: BLE001 - an unreadable config is the report's to list, not ours
                continue
            for change in changed_files(records):
                notes[f"mods file {change}: runs in {folder} were trained with another version"] = None
    return list(notes)
