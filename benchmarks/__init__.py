"""plip-nn benchmarks: overhead, generation (one row and batched), remote bytes, memory, GPU.

Run with ``python -m benchmarks.run [--quick] [--out benchmarks/_out]`` (``make bench``).
Every figure is a ratio of two timings (or sizes) measured side by side in the same process,
the median of several repeats after a warm-up.
"""
