"""dmdesk's icons, shipped as package data (dmdesk.ui.resources.resources_dir)."""
