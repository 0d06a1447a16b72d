"""Placeholder replaced by the catalog implementation."""
