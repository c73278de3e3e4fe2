"""Shared contract of avprep and avtrain: sample fields, codecs, spectrograms. Light: numpy, av, soundfile only."""

__version__ = "0.2.0"
