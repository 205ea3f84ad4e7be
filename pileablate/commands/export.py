"""`pileablate export`: write a trained run as a Hugging Face transformers checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="Run folder to export (holds config.json and ckpt/latest.pt).", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (config.json, model.safetensors, ...).", show_default=False),
    fmt: str = typer.Option("hf", "--format", "-f", help="Output format. 'hf': transformers GPT2LMHeadModel for the baseline, LlamaForCausalLM for rope,rmsnorm,swiglu (+gqa); other modifications are refused by name. Needs pip install 'pileablate[hf]'."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export in --out."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Load the export back and check its logits equal the run's."),
) -> None:
    """Export a run's latest checkpoint as a Hugging Face transformers model.

    The baseline becomes GPT2LMHeadModel; rope,rmsnorm,swiglu (optionally with gqa; trainer-only
    warmup/cosine/adam/muon do not matter) becomes LlamaForCausalLM. Any other modification (mla, moe,
    mtp, postnorm, qknorm, relu2, softcap, a --mods-file's, or rope/rmsnorm/swiglu on their own) has no
    Hugging Face equivalent and is refused by name.
    Needs the optional packages: pip install 'pileablate[hf]'.
    """
    from pileablate.export.run import export_run

    export_run(run_dir, out, fmt, overwrite=overwrite, verify=verify)
