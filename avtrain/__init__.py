"""avtrain: recipes, data, models and engine for memory-augmented lip reading (associative bridging).

Kept light on purpose: importing the package must not import torch, so `avtrain --help` and recipe
validation stay fast. Heavy modules are imported by the commands that need them.
"""

__version__ = "0.1.0"
