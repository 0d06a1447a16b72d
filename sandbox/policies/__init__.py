"""Access policies: value objects, the pure policy engine and the access lifecycle."""
