"""The rules of ZIP-004/ZIP-005. No Qt here: the GUI and the CLI both call these services.

Entry point: :func:`dmdesk.services.context.build_context` then
:class:`dmdesk.services.runs.TrainingRunService` and :mod:`dmdesk.services.settings`.
"""
