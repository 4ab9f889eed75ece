"""Where a sweep's runs execute: this machine's device slots, a Ray cluster, or SLURM."""
