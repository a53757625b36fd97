"""svwatchd, the directory-watching daemon: an application, not a library.

Its interfaces are the ``svwatchd`` command (``run``, ``check``, ``status``),
its YAML config, the files it writes and its log lines; every module here is
private and may change without notice.
"""
