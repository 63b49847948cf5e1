"""Streaming production monitoring for ML models: Kafka in, drift and performance out."""

__version__ = "0.1.0"
