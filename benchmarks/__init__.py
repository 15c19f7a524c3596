"""Benchmark tooling for the serving lab: run the load tests, analyse the results, report them."""
