"""effai_fast.additive (under construction)."""
