"""`effai tour` step: reverse vs forward mode cost as n grows (filled in below)."""
