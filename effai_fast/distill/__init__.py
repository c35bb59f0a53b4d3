"""effai_fast.distill (under construction)."""
