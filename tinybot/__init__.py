"""tinybot: a small, hardened Bitvavo trading bot."""

__version__ = "0.1.0"
