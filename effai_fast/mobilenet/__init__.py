"""effai_fast.mobilenet (under construction)."""
