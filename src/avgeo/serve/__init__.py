"""HTTP service: FastAPI app, SQLite result store, bounded worker pool and the map page."""
