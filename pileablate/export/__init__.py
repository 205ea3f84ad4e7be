"""Export of trained runs to other frameworks (Hugging Face transformers: hf.py)."""
