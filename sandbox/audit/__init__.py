"""The tamper-evident audit chain: events, verification, checkpoints, export, certificates."""
