"""Audio perception engines: mains hum (ENF), speech activity, birds and sound events."""
