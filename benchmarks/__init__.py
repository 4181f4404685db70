"""Performance and accuracy benchmarks; each writes benchmarks/results/NAME.json."""
