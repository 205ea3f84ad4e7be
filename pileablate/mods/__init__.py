"""The built-in modifications, one module each: this folder's listing is the list.

Each module registers its components and its modification exactly as a user's `--mods-file` does:

    from pileablate.mods import Modification, register, register_component

    register_component("block", "parallel", ParallelBlock)          # slot, component name, build
    register(Modification("parallel", "attention and MLP side by side", fills={"block": "parallel"},
                          reference="Wang & Komatsuzaki 2021 (GPT-J)"))

`baseline.py` holds the components the baseline itself is built from. Slots and what each component's
`build` is called with: `pileablate.model.registry.SLOTS`.
"""

from pileablate.model.registry import SLOTS, Modification, register, register_component

__all__ = ["SLOTS", "Modification", "register", "register_component"]
