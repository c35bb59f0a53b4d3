"""effai_fast.surrogate (under construction)."""
