"""Where outputs live and how a run is made current, local or remote, in one place.

- :mod:`~fruits.storage.location`: local or remote, decided once; exists, remove,
  copy, deliver, upload, download, open (fsspec underneath).
- :mod:`~fruits.storage.atomic`: small objects changed in one conditional step.
- :mod:`~fruits.storage.lease`: one writer per output folder.
- :mod:`~fruits.storage.layout`: the names of everything a run writes.
- :mod:`~fruits.storage.publish`: runs under their own id, made current by a pointer.
- :mod:`~fruits.storage.staged`: the publish transaction as one context manager.
"""
