"""Widgets and dialogs of the plugin: thin classes over Designer files in ``ui/``."""
