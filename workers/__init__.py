"""Celery side of Trad: the app, thin tasks and the chord pipeline."""
