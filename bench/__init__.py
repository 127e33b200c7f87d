"""Benchmark of the bot as a real process against the in-process fakes: `python -m bench.run`."""
