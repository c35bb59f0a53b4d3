"""effai_fast.nn (under construction)."""
