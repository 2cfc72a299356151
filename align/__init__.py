"""align: align language models with human preferences from one CLI."""

__version__ = "0.1.0"
