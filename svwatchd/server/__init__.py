"""svserver, the speech decoding server: an application, not a library.

Its interfaces are the ``svserver`` command, the HTTP API under ``/v1`` and the
stream record (:mod:`svwatchd.model.record`); every module here is private and
may change without notice. Clients talk to it through :mod:`svwatchd.client`.
"""
