"""The ``speechdata`` module of the client library: recognition results and their writers.

The results are the shared model (:mod:`svwatchd.model.speechdata`, which
svserver and the daemon use too); this module is where a client program finds
them, under the vendor's module name.
"""

from svwatchd.model import speechdata as _model
from svwatchd.model.speechdata import *  # noqa: F403  (the same names, by design)

__all__ = _model.__all__
