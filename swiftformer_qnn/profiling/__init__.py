"""Latency profiles: one schema for every source, attribution of ops to blocks, backends."""
