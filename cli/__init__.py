"""Thin Typer layers over the goa and trust libraries."""
