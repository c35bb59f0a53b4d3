"""effai_fast.hill (under construction)."""
