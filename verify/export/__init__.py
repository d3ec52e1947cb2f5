"""Exported models run through the real libraries they target."""
