"""Running the network: `cnet server`, `cnet agent`, `cnet up` (demo lives in demo.py)."""
