"""The kernel: what every floor shares (settings, errors, statuses, redaction, network rules,
the model call). It imports nothing else of this project."""

__version__ = "0.1.0"
