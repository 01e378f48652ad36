"""Datasets and batch jobs: manifests, resumable batch location over folders."""
