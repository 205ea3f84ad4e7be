"""Check and measure pileablate on a CUDA machine: see pileablate/tools/gpu_check.py."""
from pileablate.tools.gpu_check import main

raise SystemExit(main())
