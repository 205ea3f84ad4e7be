"""`pileablate export` behind the command line: load a run, write it in another format, verify it."""

from __future__ import annotations

from pathlib import Path

from pileablate.errors import UserError

FORMATS = ("hf",)


def export_run(run_dir: Path, out_dir: Path, fmt: str = "hf", *, overwrite: bool = False, verify: bool = True,
               console=None) -> dict:
    """Export the latest checkpoint of `run_dir` to `out_dir`; returns what was written."""
    from rich.console import Console

    console = console if console is not None else Console(stderr=True, soft_wrap=True, highlight=False)
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    from pileablate.export import hf

    hf._require_hf()
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.json); pass a folder made by 'pileablate train'")
    hf.check_writable(out_dir)  # before the checkpoint is loaded
    from pileablate.inference.trained import load_trained_run

    model, config, tokenizer = load_trained_run(run_dir)
    hf.hf_architecture(model.config)  # refuse before writing anything
    metadata = {
        "run": config.get("name", run_dir.name),
        "mods": config.get("mods", []),
        "preset": config.get("preset"),
        "tokenizer": config.get("data", {}).get("tokenizer", {}),
        "note": "token ids are pileablate's tokenizer's (see tokenizer.spec); ids >= real_vocab_size are padding",
    }
    info = hf.export_hf(model, out_dir, eot_id=tokenizer.eot_id, metadata=metadata, overwrite=overwrite)
    line = f"exported {run_dir} as {info['architecture']} to {out_dir}"
    if verify:
        diff = hf.verify_export(model, out_dir)
        info["max_abs_logit_diff"] = diff
        line += f"; verified: logits match within {diff:.1e} (fp32)"
    console.print(line)
    return info
