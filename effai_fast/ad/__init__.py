"""effai_fast.ad (under construction)."""
