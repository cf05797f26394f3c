"""`python -m streams.bench_readmodel` (docs/performance.md): runs streams.bench.readmodel."""

from streams.bench.readmodel import main

if __name__ == "__main__":
    main()
