"""Settings card: the Deep Memory settings, validated and saved through the service layer.

Secrets typed here (OpenAI key, Activeloop token) go to the OS keyring, never to the settings
file or the database; the fields never show a stored secret back.

Keyring and settings-file reads and writes, and the LLM connection test, are coroutines on the
GUI's qasync loop (dmdesk.ui.aio) with their blocking part in a thread: a slow keyring (a locked
Secret Service, a D-Bus timeout) or a slow LLM never freezes the window.
"""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dmdesk import secrets
from dmdesk.config import DmdeskConfig, SettingsFileBroken
from dmdesk.domain.errors import DmdeskError
from dmdesk.services import settings as settings_service
from dmdesk.ui import aio


class NumberBox(QSpinBox):
    """A whole-number box that says what it refuses: QSpinBox silently drops what is out of its
    range ("-3" became "3", issue 26); this one emits `refused` with the text typed, and the
    card shows the range under the field."""

    refused = Signal(str)

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        result = super().validate(text, pos)
        if result[0] == QValidator.State.Invalid and text.strip():
            self.refused.emit(text.strip())
        return result


class SettingsCard(QGroupBox):
    settings_saved = Signal(object)  # the new DmdeskConfig

    def __init__(self, config: DmdeskConfig, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        self.setObjectName("settingsCard")
        self._config = config
        outer = QVBoxLayout(self)
        form = QFormLayout()
        self.store_edit = QLineEdit()
        self.store_edit.setObjectName("storePathEdit")
        self.store_edit.setPlaceholderText("/path/to/dataset or hub://org/dataset")
        self.backend_combo = QComboBox()
        self.backend_combo.setObjectName("backendCombo")
        self.backend_combo.addItem("DeepLake Cloud (managed)", "deeplake")
        self.backend_combo.addItem("Local engine (dmdesk)", "local")
        self.base_url_edit = QLineEdit()
        self.base_url_edit.setObjectName("llmBaseUrlEdit")
        self.base_url_edit.setPlaceholderText("https://api.openai.com/v1 (default)")
        self.model_edit = QLineEdit()
        self.model_edit.setObjectName("llmModelEdit")
        self.questions_spin = NumberBox()
        self.questions_spin.setObjectName("questionsSpin")
        self.questions_spin.setRange(1, 20)
        self.concurrency_spin = NumberBox()
        self.concurrency_spin.setObjectName("concurrencySpin")
        self.concurrency_spin.setRange(1, 256)
        self.limit_spin = NumberBox()
        self.limit_spin.setObjectName("chunkLimitSpin")
        self.limit_spin.setRange(0, 10_000_000)
        self.limit_spin.setSpecialValueText("all chunks")
        self.mode_combo = QComboBox()
        self.mode_combo.setObjectName("llmModeCombo")
        self.mode_combo.addItem("Online — chat calls as the run goes", "online")
        self.mode_combo.addItem("Batch API — about half the price, results within hours", "batch")
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setObjectName("budgetSpin")
        self.budget_spin.setRange(0, 1_000_000)
        self.budget_spin.setDecimals(2)
        self.budget_spin.setPrefix("$")
        self.budget_spin.setSpecialValueText("no budget")
        self.budget_spin.setToolTip(
            "The most a generation run may spend on the LLM; it stops (resumable) before the "
            "next calls would pass it"
        )
        self.budget_spin.setMaximumWidth(160)
        self.openai_key_edit = QLineEdit()
        self.openai_key_edit.setObjectName("openaiKeyEdit")
        self.openai_key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.activeloop_edit = QLineEdit()
        self.activeloop_edit.setObjectName("activeloopTokenEdit")
        self.activeloop_edit.setEchoMode(QLineEdit.EchoMode.Password)
        # Each field carries its own error line, shown under it when a save refuses it.
        self._fields: dict[str, tuple[QWidget, QLabel]] = {}
        for key, label, widget in (
            ("vector_store_path", "Vector store", self.store_edit),
            ("deep_memory_backend", "Deep Memory backend", self.backend_combo),
            ("llm_base_url", "LLM base URL", self.base_url_edit),
            ("llm_model", "LLM model", self.model_edit),
            ("questions_per_chunk", "Questions per chunk", self.questions_spin),
            ("generation_concurrency", "Concurrent LLM calls", self.concurrency_spin),
            ("chunk_limit", "Chunk limit", self.limit_spin),
            ("llm_mode", "LLM mode", self.mode_combo),
            ("budget_usd", "Budget per run", self.budget_spin),
        ):
            form.addRow(label, self._with_error_line(key, widget))
        self.test_button = QPushButton("Test connection")
        self.test_button.setObjectName("testConnectionButton")
        self.test_button.setToolTip(
            "One 1-token request to the LLM named above (unsaved values too)"
        )
        self.test_button.clicked.connect(self._on_test_clicked)
        self.connection_label = QLabel()
        self.connection_label.setObjectName("connectionResult")
        self.connection_label.setWordWrap(True)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.connection_label, 1)
        form.addRow("", test_row)
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        for key, spin in (
            ("questions_per_chunk", self.questions_spin),
            ("generation_concurrency", self.concurrency_spin),
            ("chunk_limit", self.limit_spin),
        ):
            # A number box as wide as its numbers, its range said; typing past it is refused,
            # and said under the field.
            spin.setMaximumWidth(160)
            spin.setToolTip(f"{spin.minimum()}–{spin.maximum()}")
            spin.refused.connect(lambda text, key=key, spin=spin: self._refused(key, spin, text))
        self._notes: set[str] = set()  # fields showing what their box refused
        for key, (field, _error) in self._fields.items():
            # A field the admin changes loses its old error: it may be fixed now.
            if isinstance(field, QLineEdit):
                field.textEdited.connect(lambda _t, key=key: self._clear_field_error(key))
            elif isinstance(field, QComboBox):
                field.currentIndexChanged.connect(lambda _i, key=key: self._clear_field_error(key))
            elif isinstance(field, (QSpinBox, QDoubleSpinBox)):
                field.valueChanged.connect(lambda _v, key=key: self._clear_field_error(key))
        form.addRow("OpenAI API key", self.openai_key_edit)
        form.addRow("Activeloop token", self.activeloop_edit)
        outer.addLayout(form)
        # Under the LLM fields while the local writer is in use: they name a model that is not
        # the one writing (the demo showed "gpt-4o-mini" and OpenAI's URL, issue 26).
        self.local_writer_note = QLabel()
        self.local_writer_note.setObjectName("localWriterNote")
        self.local_writer_note.setWordWrap(True)
        self.local_writer_note.setStyleSheet("color: #6b7280;")
        self.local_writer_note.hide()
        model_box = self.model_edit.parentWidget()
        model_layout = model_box.layout() if model_box is not None else None
        if model_layout is not None:
            model_layout.addWidget(self.local_writer_note)
        self.generator_label = QLabel()
        self.generator_label.setObjectName("generatorLabel")
        outer.addWidget(self.generator_label)
        self.error_label = QLabel()
        self.error_label.setObjectName("settingsError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b91c1c;")
        self.error_label.hide()
        outer.addWidget(self.error_label)
        row = QHBoxLayout()
        row.addStretch(1)
        self.saved_label = QLabel("Saved.")
        self.saved_label.setObjectName("settingsSaved")
        self.saved_label.setStyleSheet("color: #15803d;")
        self.saved_label.hide()
        row.addWidget(self.saved_label)
        self.save_button = QPushButton("Save Settings")
        self.save_button.setObjectName("saveSettingsButton")
        self.save_button.clicked.connect(self._on_save_clicked)
        row.addWidget(self.save_button)
        outer.addLayout(row)
        self.load(config)

    def load(self, config: DmdeskConfig) -> None:
        """Show `config`; what needs the keyring (which secrets are set, hence who writes the
        questions) follows a moment later, read off the GUI thread."""
        self._config = config
        self.store_edit.setText(config.vector_store_path or "")
        self.backend_combo.setCurrentIndex(self.backend_combo.findData(config.deep_memory_backend))
        self.base_url_edit.setText(config.llm_base_url or "")
        self.model_edit.setText(config.llm_model)
        self.questions_spin.setValue(config.questions_per_chunk)
        self.concurrency_spin.setValue(config.generation_concurrency)
        self.limit_spin.setValue(config.chunk_limit or 0)
        self.mode_combo.setCurrentIndex(self.mode_combo.findData(config.llm_mode))
        self.budget_spin.setValue(config.budget_usd or 0)
        for edit in (self.openai_key_edit, self.activeloop_edit):
            edit.clear()
        self._run("load", self._load_secrets(config))

    @property
    def busy(self) -> bool:
        """A keyring read, a save or a connection test is under way."""
        return any(not t.done() for t in self._tasks.values())

    def stop(self) -> None:
        """Cancel what is under way (the window is closing)."""
        for task in self._tasks.values():
            task.cancel()

    def _run(self, key: str, coro: Any) -> None:
        old = self._tasks.get(key)
        if old is not None and not old.done():
            old.cancel()  # a newer request of the same kind replaces it
        self._tasks[key] = aio.spawn(coro, name=f"settings card: {key}")

    async def _load_secrets(self, config: DmdeskConfig) -> None:
        resp = await asyncio.to_thread(settings_service.get_settings, config)
        for edit, configured in (
            (self.openai_key_edit, resp.llm_key_configured),
            (self.activeloop_edit, resp.activeloop_token_configured),
        ):
            edit.setPlaceholderText(
                "configured (type to replace)" if configured else "not set — stored in the keyring"
            )
        self.generator_label.setText(f"Questions are written by {resp.generator}.")
        self.local_writer_note.setText(
            f"Not in use now: {resp.generator} writes the questions until an OpenAI key or an "
            "LLM base URL is set."
        )
        self.local_writer_note.setVisible(resp.generator_is_local)

    def changes(self) -> dict[str, Any]:
        """The values the form asks for (before environment overrides)."""
        return {
            "vector_store_path": self.store_edit.text().strip() or None,
            "deep_memory_backend": self.backend_combo.currentData(),
            "llm_base_url": self.base_url_edit.text().strip() or None,
            "llm_model": self.model_edit.text().strip(),
            "questions_per_chunk": self.questions_spin.value(),
            "generation_concurrency": self.concurrency_spin.value(),
            "chunk_limit": self.limit_spin.value() or None,
            "llm_mode": self.mode_combo.currentData(),
            "budget_usd": self.budget_spin.value() or None,
        }

    def _with_error_line(self, key: str, widget: QWidget) -> QWidget:
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(widget)
        error = QLabel()
        error.setObjectName(f"fieldError_{key}")
        error.setWordWrap(True)
        error.setStyleSheet("color: #b91c1c;")
        error.hide()
        lay.addWidget(error)
        self._fields[key] = (widget, error)
        return box

    def _refused(self, key: str, spin: QSpinBox, text: str) -> None:
        _, error = self._fields[key]
        what = "A negative number is" if text.startswith("-") else f"“{text}” is"
        special = spin.specialValueText()  # what the minimum means ("all chunks"), if anything
        error.setText(
            f"{what} not accepted here: a whole number from {spin.minimum()} "
            f"to {spin.maximum()}" + (f" (0 is {special})" if special else "")
        )
        error.show()
        self._notes.add(key)  # stays until the next save: the box kept its old value

    def _clear_field_error(self, key: str) -> None:
        widget, error = self._fields[key]
        if key not in self._notes and not error.isHidden():
            error.hide()
            widget.setStyleSheet("")

    def field_error(self, key: str) -> str:
        """The error shown under a field ("" when none)."""
        _, error = self._fields[key]
        return error.text() if not error.isHidden() else ""

    def show_error(self, message: str) -> None:
        """A refused save: each part of the message that names a field goes under that field;
        what names none stays at the bottom of the card."""
        self.saved_label.hide()
        self._notes.clear()
        for widget, error in self._fields.values():
            error.hide()
            widget.setStyleSheet("")
        rest = []
        body = message.removeprefix("Invalid settings: ")
        for part in body.split("; ") if message else []:
            key = part.split(" ", 1)[0].rstrip(":")
            if key in self._fields:
                widget, error = self._fields[key]
                error.setText(part.split(": ", 1)[-1])
                error.show()
                widget.setStyleSheet("border: 1px solid #b91c1c;")
            else:
                rest.append(part)
        text = "; ".join(rest) if rest and len(rest) < len(body.split("; ")) else message
        if rest or not any(not e.isHidden() for _, e in self._fields.values()):
            self.error_label.setText(text)
            self.error_label.setVisible(bool(message))
        else:
            self.error_label.hide()

    @Slot()
    def _on_save_clicked(self) -> None:
        self.show_error("")
        # Only what the admin changed is saved: values in force but not chosen (the demo
        # profile's, an environment variable's) must not be pinned into the settings file.
        requested = {k: v for k, v in self.changes().items() if v != getattr(self._config, k)}
        typed = {
            name: edit.text()
            for edit, name in (
                (self.openai_key_edit, secrets.OPENAI_API_KEY),
                (self.activeloop_edit, secrets.ACTIVELOOP_TOKEN),
            )
            if edit.text()
        }
        try:  # the fields are checked at once (no I/O but a stat); only the writes wait
            settings_service.validate_changes(self._config, requested)
        except DmdeskError as exc:
            self.show_error(str(exc))
            return
        self.save_button.setEnabled(False)
        self._run("save", self._save(requested, typed))

    def confirm_replace_broken(self, problem: SettingsFileBroken) -> bool:
        """Ask before replacing a settings file that cannot be read (kept as a backup)."""
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "The settings file cannot be read",
            problem.message,
            QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setObjectName("replaceBrokenSettingsBox")
        box.setInformativeText(
            "Replace it with these settings? The broken file is kept beside it as a backup. "
            "Cancel leaves it exactly as it is and saves nothing."
        )
        replace = box.addButton("Replace (keep a backup)", QMessageBox.ButtonRole.AcceptRole)
        box.exec()
        return box.clickedButton() is replace

    async def _save(self, requested: dict[str, Any], typed: dict[str, str]) -> None:
        try:
            try:
                new = await asyncio.to_thread(_save, self._config, requested, typed)
            except SettingsFileBroken as broken:
                if not self.confirm_replace_broken(broken):
                    raise
                new = await asyncio.to_thread(_save, self._config, requested, typed, True)
        except (DmdeskError, secrets.SecretStoreUnavailable) as exc:
            self.show_error(str(exc))
            return
        finally:
            self.save_button.setEnabled(True)
        self.load(new)
        overridden = [
            f"{key} (DMDESK_{key.upper()})"
            for key, value in requested.items()
            if value is not None and getattr(new, key) != value
        ]
        if overridden:
            self.show_error(
                "Saved, but the environment overrides: "
                + ", ".join(overridden)
                + ". Unset those variables for the saved values to apply."
            )
        else:
            self.saved_label.setText("Saved." if requested or typed else "Nothing changed.")
            self.saved_label.show()
        self.settings_saved.emit(new)

    @Slot()
    def _on_test_clicked(self) -> None:
        """Test the LLM the fields name now (saved or not), with the typed key or the stored one."""
        self.test_button.setEnabled(False)
        self.connection_label.setStyleSheet("")
        self.connection_label.setText("Testing…")
        self._run(
            "test",
            self._test(
                self.base_url_edit.text().strip() or None,
                self.model_edit.text().strip(),
                self.openai_key_edit.text() or None,
            ),
        )

    async def _test(self, base_url: str | None, model: str, key: str | None) -> None:
        try:
            text = await settings_service.check_llm_connection(
                base_url, model, key, timeout_s=min(15.0, self._config.llm_timeout_s)
            )
            ok = True
        except DmdeskError as exc:
            text, ok = exc.message, False
        finally:
            self.test_button.setEnabled(True)
        self.connection_label.setStyleSheet("color: #15803d;" if ok else "color: #b91c1c;")
        self.connection_label.setText(text)


def _save(
    config: DmdeskConfig,
    requested: dict[str, Any],
    typed: dict[str, str],
    replace_broken: bool = False,
) -> DmdeskConfig:
    """The card's writes, in a thread (a module function: nothing of Qt goes to the thread —
    see dmdesk.ui.live._Reader)."""
    new = settings_service.update_settings(config, requested, replace_broken=replace_broken)
    for name, value in typed.items():
        secrets.set_secret(name, value)
    return new
