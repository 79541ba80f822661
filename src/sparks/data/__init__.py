"""Task data: synthetic arithmetic, hub math datasets, and clean/corrupted pairs."""
