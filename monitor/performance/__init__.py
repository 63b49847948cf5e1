"""Model performance from delayed labels, and estimated performance before labels arrive."""
