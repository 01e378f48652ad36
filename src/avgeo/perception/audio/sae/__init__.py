"""Learned acoustic atoms: sparse autoencoders over BirdNET window embeddings (model,
training, atom naming with geographic concentration, and the `sae` perception engine)."""
