"""lvsweep's SLURM launcher (`hydra/launcher=slurm`): hydra-submitit-launcher's, with a sweep that
waits for every job and counts one the scheduler ended without a result as failed.

- `slurm_launcher`: the launcher Hydra instantiates from conf/hydra/launcher/slurm.yaml.
"""
