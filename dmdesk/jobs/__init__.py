"""What runs a run: the job base (`job`), its heartbeat, generation (with Batch API rounds in
`batch`), training, and the runner that picks the job of a run's phase (`runner.run_job`)."""
