"""The object names a tester finds dmdesk's widgets by — a contract (README "Testing dmdesk with
pytest-qt"); a test fails when one of them disappears. Per-run widgets live in the run's open
History row; the review dialog's once it is open."""

from __future__ import annotations

OBJECT_NAMES: dict[str, str] = {
    # the window
    "mainWindow": "the main window",
    "deepMemoryPage": "the Deep Memory page",
    "gateWarning": "the warning shown instead of the cards when Deep Memory is unavailable",
    # Training Workflow
    "workflowCard": "the Training Workflow card",
    "generateButton": "Generate Training Data",
    "generateBlockedLabel": "why Generate is disabled",
    "progressBar": "the running job's progress bar",
    "progressLabel": "the running job's progress text",
    "stopButton": "Stop the running job",
    "reviewButton": "Review Pairs…",
    "trainButton": "Train Deep Memory",
    # Training History
    "historyView": "the Training History tree",
    "liveStateLabel": "shown only while live updates are paused (the watcher is retrying)",
    "refreshButton": "Refresh, in an active run's open row",
    "proceedButton": "Proceed, in a failed run's open row",
    "deleteButton": "Delete, in a failed run's open row",
    "runError": "the error text in a failed run's open row",
    "confirmRemoveBox": "the confirmation before Delete",
    "errorBox": "an error dialog",
    "runDetails": "a completed run's details",
    "modelState": "whether search uses the run's model, and the guard's verdict",
    "verdictsLabel": "the verdicts on held-out pairs and on the evaluation set of real questions",
    "evaluationSetAction": "File → Evaluation set…: save real questions to judge models on",
    "settingsAction": "File → Settings… (Ctrl+,): brings the Settings card into view",
    "evaluationSavedBox": "the confirmation that the evaluation set is saved",
    "useModelButton": "Use this model",
    "stopUsingButton": "Stop using Deep Memory",
    # search
    "searchBox": "the search query",
    "searchButton": "Search",
    "searchResultsPlain": "results without Deep Memory",
    "searchResultsDeepMemory": "results with Deep Memory",
    # Settings
    "settingsCard": "the Settings card",
    "storePathEdit": "vector store path",
    "backendCombo": "Deep Memory backend",
    "llmBaseUrlEdit": "LLM base URL",
    "llmModelEdit": "LLM model",
    "questionsSpin": "questions per chunk",
    "concurrencySpin": "concurrent LLM calls",
    "chunkLimitSpin": "chunk limit",
    "openaiKeyEdit": "OpenAI API key (to the keyring)",
    "activeloopTokenEdit": "Activeloop token (to the keyring)",
    "testConnectionButton": "Test connection: one 1-token request to the LLM the fields name",
    "connectionResult": "what the connection test found",
    "saveSettingsButton": "Save the settings",
    "settingsError": "a settings error",
    # the review dialog
    "reviewDialog": "the review dialog",
    "pairTable": "its pairs",
    "reviewCounts": "approved / rejected / flagged / not reviewed",
    "approveButton": "Approve the selected pairs (A)",
    "rejectButton": "Reject the selected pairs (R)",
    "approveAllButton": "Approve all pairs not reviewed yet",
    "includeFlaggedCheck": "Approve All includes flagged pairs",
    "flaggedFirstCheck": "show flagged pairs first",
    "closeReviewButton": "Close the review dialog",
}
