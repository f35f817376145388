"""reasoner: a self-improving math reasoning engine with process rewards."""

import os

# Waiting OpenMP threads sleep instead of spinning, so another busy process on the machine slows
# torch down in proportion instead of by 10x (see reasoner.threads). libgomp reads this when torch
# loads, hence here, before anything imports torch; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
