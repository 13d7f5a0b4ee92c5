"""lvsweep's Hydra configs: shipped inside the package as `lvsweep.conf`, found through `pkg://lvsweep.conf`."""
