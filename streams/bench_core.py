"""`python -m streams.bench_core` (docs/performance.md): runs streams.bench.core."""

from streams.bench.core import main

if __name__ == "__main__":
    main()
