"""mendnet: find and repair what is wrong inside trained image classifiers."""

__version__ = "0.1.0"
