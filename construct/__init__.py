"""rawc: compile RAW-language learning algorithms into transformer weights."""
__version__ = "0.1.0"
