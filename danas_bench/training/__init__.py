"""Training students and teachers: datasets, the student network, the fused many-student engine and
its C kernels, the teachers, and the pool of training processes."""
