"""Making tables: generation plans, shard runs on local processes or SLURM, merging, the MANIFEST of
checksums, architecture facts, and the cluster parameters of a run."""
