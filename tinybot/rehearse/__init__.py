"""Trying tinybot without risk: the offline demo, replay over stored candles, the chaos harness."""
