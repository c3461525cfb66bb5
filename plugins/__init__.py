"""Clamor's built-in plugins, registered exactly as third-party ones are."""
