"""Authentication: API tokens and authenticators."""
