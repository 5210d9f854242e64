"""The risk-aware report: its build, its figures and its HTML template."""
