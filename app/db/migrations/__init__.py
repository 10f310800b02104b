"""Alembic migrations of Trad's schema."""
