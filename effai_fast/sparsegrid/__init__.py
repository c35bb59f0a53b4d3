"""effai_fast.sparsegrid (under construction)."""
