"""The shell: CLI, local services, synthetic data and demo. Wires every stage."""

__version__ = "0.1.0"
