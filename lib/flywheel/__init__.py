"""flywheel: a research workbench for LLM data flywheels (collect → triage → fine-tune → evaluate)."""

__version__ = "0.1.0"
