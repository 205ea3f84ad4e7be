"""A trained run read back for inference and export: the model with its latest weights, its config, its tokenizer."""

from __future__ import annotations

from pathlib import Path

from pileablate.errors import UserError


def load_trained_run(run_dir, device: str = "cpu"):
    """(GPT in eval mode with the latest checkpoint's weights, config.json dict, Tokenizer).

    UserError when the directory is not a run or has no checkpoint yet.
    """
    from pileablate.data.tokenizer import load_tokenizer
    from pileablate.model.config import ModelConfig
    from pileablate.model.gpt import GPT
    from pileablate import runfolder
    from pileablate.train.checkpoint import model_weights

    run_dir = Path(run_dir)
    config = runfolder.read_config(run_dir)
    if config is None:
        raise UserError(f"{run_dir} is not a run folder (no config.json); pass a folder made by 'pileablate train'")
    if not runfolder.checkpoint_path(run_dir).is_file():
        raise UserError(f"run {run_dir} has no checkpoint yet; train it first ('pileablate train' with its options)")
    from pileablate.mods_files import load_recorded

    load_recorded(config.get("train", {}).get("mods_files", ()))  # the run's own modifications, if any
    model = GPT(ModelConfig(**config["model"]))
    state = runfolder.load_checkpoint(run_dir, map_location=device)
    model.load_state_dict(model_weights(state))
    model.to(device).eval()
    expected = config["data"]["tokenizer"]
    tokenizer = load_tokenizer(expected["spec"])
    # A ranks *file* can be edited after training; named encodings and `bytes` are fixed definitions.
    if Path(expected["spec"]).is_file() and expected.get("sha256") and tokenizer.sha256 != expected["sha256"]:
        raise UserError(f"tokenizer {expected['spec']} has changed since run {run_dir.name} was trained "
                        f"(sha256 {tokenizer.sha256[:12]} != {expected['sha256'][:12]}); restore the original file")
    return model, config, tokenizer
