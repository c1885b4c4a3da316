"""plip-nn benchmarks: overhead, batching, generation, remote bytes and memory, as ratios.

Run with ``python -m benchmarks.run [--quick] [--out benchmarks/_out]`` (``make bench``).
Every figure is a ratio of two timings (or sizes) measured side by side in the same process,
the median of several repeats after a warm-up.
"""
