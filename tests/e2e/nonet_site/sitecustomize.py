"""Loaded by every Python that a `tests.e2e.nonet` command starts (it is on their PYTHONPATH):
dmdesk's own child processes (`dmdesk _demo-store`, `dmdesk _job`) get the same audit hook."""

from tests.e2e.nonet import install

install()
