"""Task 1: one model for any channel subset (channel-adaptive stems, subset training, report)."""
