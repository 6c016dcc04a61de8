"""Deep Memory backends: DeepLake Cloud's managed training and dmdesk's local engine."""
