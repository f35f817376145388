"""reasoner: a self-improving math reasoning engine with process rewards."""

import os

# Waiting OpenMP threads sleep instead of spinning, so another busy process on the machine slows
# torch down in proportion instead of by 10x (see reasoner.threads). libgomp reads this when torch
# loads, hence here, before anything imports torch; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Where DeepSpeed is installed, accelerate imports it (when a model is saved, among others), and
# on a machine without an NVIDIA driver its accelerator detection logs a warning to stdout, which
# would corrupt `--json` results. It settles on the CPU there anyway: say so up front (a value the
# user set wins; XPU/NPU/HPU users set DS_ACCELERATOR themselves, as DeepSpeed documents).
if not os.path.exists("/proc/driver/nvidia/version"):
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
