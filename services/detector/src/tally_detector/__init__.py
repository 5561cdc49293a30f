"""Tally's detector: runs the model on chunks of a photo's slices through Triton."""
