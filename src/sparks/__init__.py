"""sparks: watch attention-head circuits emerge during reasoning post-training."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sparks")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
