"""Perception: turns decoded media into atoms (named, time-stamped, scored cues)."""
