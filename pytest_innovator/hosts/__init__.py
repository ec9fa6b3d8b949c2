"""Many machines: which host and xdist worker runs each item, given the GPUs every host has."""
